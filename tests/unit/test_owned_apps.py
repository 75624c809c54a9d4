"""Which Serve applications the reconciler changes, and how: only its own,
one at a time, and only when what they should run changed (issue 16, point
4). Serve's details are built as its REST API reports imperative and
declarative applications; the reconciler runs against fakes of the
registry, of that API and of Serve's deploy calls (no Ray here: the real
thing is tests/integration/test_coexistence.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from seedserve.deployments.owned_apps import FINGERPRINT_ENV, fingerprinted, owned_fingerprints, plan_changes
from seedserve.deployments.reconciler import Reconciler
from seedserve.deployments.serve_config import model_application

__all__ = ["plan_changes", "serve_details"]


def _doc(name: str, version: int = 1, sha: str = "abc", **scaling: Any) -> dict[str, Any]:
    manifest = {"name": name, "inputs": [{"name": "x", "shape": [-1, 4]}], "outputs": [{"name": "y"}],
                "scaling": {"min_replicas": 0, "max_replicas": 3, "num_cpus": 0.2, **scaling}}
    return {"name": name, "version": version, "manifest": manifest, "artifact": {"sha256": sha}}


def _running(app: Mapping[str, Any], status: str = "RUNNING") -> dict[str, Any]:
    """Serve's details of an application the reconciler deployed from ``app``."""
    return _reported(fingerprinted(app), status)


def _reported(deployed: Mapping[str, Any], status: str = "RUNNING") -> dict[str, Any]:
    """Serve's details of an application deployed imperatively as ``deployed``."""
    deployment = deployed["deployments"][0]
    return {"status": status, "deployed_app_config": None, "source": "imperative",
            "deployments": {deployment["name"]: {"deployment_config": {
                "name": deployment["name"], "ray_actor_options": deployment["ray_actor_options"]}}}}


def serve_details(apps: Iterable[Mapping[str, Any]], **others: Any) -> dict[str, Any]:
    """Serve's details with the master (declarative), ``apps`` as the
    reconciler deployed them, and ``others`` as given."""
    master = {"status": "RUNNING", "source": "declarative", "deployed_app_config": {"name": "master"},
              "deployments": {"Master": {"deployment_config": {"ray_actor_options": {"num_cpus": 0.05}}}}}
    return {"applications": {"master": master, **{app["name"]: _running(app) for app in apps}, **others}}


def _foreign(source: str) -> dict[str, Any]:
    return {"status": "RUNNING", "source": source,
            "deployed_app_config": {"name": "x", "import_path": "theirs:app"} if source == "declarative" else None,
            "deployments": {"Hello": {"deployment_config": {"ray_actor_options": {"num_cpus": 0.1}}}}}


def test_what_runs_as_wanted_is_left_alone_and_other_applications_are_never_touched() -> None:
    apps = [model_application(_doc("a")), model_application(_doc("b"))]
    details = serve_details(apps, hello=_foreign("imperative"), greeter=_foreign("declarative"))
    assert set(owned_fingerprints(details)) == {"model-a", "model-b"}
    changes = plan_changes(apps, details)
    assert changes.deploy == [] and changes.delete == []
    changes = plan_changes([], details)
    assert changes.deploy == [] and changes.delete == ["model-a", "model-b"]


def test_a_changed_or_new_model_is_deployed_with_its_fingerprint_and_a_deleted_one_deleted() -> None:
    deployed = [model_application(_doc("a")), model_application(_doc("gone"))]
    desired = [model_application(_doc("a", sha="new")), model_application(_doc("c"))]
    changes = plan_changes(desired, serve_details(deployed))
    assert [app["name"] for app in changes.deploy] == ["model-a", "model-c"] and changes.delete == ["model-gone"]
    env = changes.deploy[0]["deployments"][0]["ray_actor_options"]["runtime_env"]["env_vars"]
    assert set(env) == {FINGERPRINT_ENV}
    assert env != _running(deployed[0])["deployments"]["ModelServer"]["deployment_config"]["ray_actor_options"][
        "runtime_env"]["env_vars"]


def test_scaling_changes_redeploy_but_the_same_config_twice_has_the_same_fingerprint() -> None:
    app = model_application(_doc("a"))
    assert fingerprinted(app) == fingerprinted(model_application(_doc("a")))
    assert [a["name"] for a in plan_changes([model_application(_doc("a", max_replicas=5))],
                                            serve_details([app])).deploy] == ["model-a"]


def test_a_model_application_of_an_earlier_declarative_seedserve_is_taken_over_once() -> None:
    app = model_application(_doc("a"))
    old = {"status": "RUNNING", "source": "declarative", "deployed_app_config": app,
           "deployments": {"ModelServer": {"deployment_config": {"ray_actor_options": {"num_cpus": 0.2}}}}}
    details = serve_details([], **{"model-a": old})
    assert owned_fingerprints(details) == {"model-a": None}
    assert [a["name"] for a in plan_changes([app], details).deploy] == ["model-a"]


def test_an_application_still_being_deleted_is_deployed_again_only_once_it_is_gone() -> None:
    app = model_application(_doc("a"))
    details = serve_details([], **{"model-a": _running(app, status="DELETING")})
    assert owned_fingerprints(details) == {}
    assert plan_changes([model_application(_doc("a", sha="new"))], details).deploy == []


# ---- the reconciler against fakes of its three collaborators


class _Store:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs

    async def list(self) -> list[dict[str, Any]]:
        return [{"name": d["name"], "latest": d["version"], "pinned": None} for d in self.docs]

    async def versions(self) -> list[dict[str, Any]]:
        return self.docs


class _Serve:
    """Serve's REST API (details) and its deploy calls, over one table of applications."""

    def __init__(self, fail: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.details_: dict[str, Any] = serve_details([], hello=_foreign("imperative"))
        self.fail = fail
        self.calls: list[tuple[str, str]] = []

    async def details(self) -> dict[str, Any]:
        return self.details_

    async def deploy(self, app: Mapping[str, Any]) -> None:
        self.calls.append(("deploy", app["name"]))
        if app["name"] in self.fail:
            raise RuntimeError(f"Serve refused {app['name']}")
        self.details_["applications"][app["name"]] = _reported(app)

    async def delete(self, name: str) -> None:
        self.calls.append(("delete", name))
        del self.details_["applications"][name]


def _reconciler(docs: list[dict[str, Any]], serve: _Serve) -> Reconciler:
    return Reconciler(_Store(docs), serve, interval_s=1, apps=serve)  # type: ignore[arg-type]


def test_the_reconciler_deploys_each_model_once_and_deletes_only_its_own() -> None:
    serve = _Serve()
    docs = [_doc("a"), _doc("b")]
    reconciler = _reconciler(docs, serve)
    assert asyncio.run(reconciler.reconcile_once()) is True
    assert serve.calls == [("deploy", "model-a"), ("deploy", "model-b")]
    assert asyncio.run(reconciler.reconcile_once()) is False  # nothing changed: nothing redeployed
    docs.pop()
    asyncio.run(reconciler.reconcile_once())
    assert serve.calls[2:] == [("delete", "model-b")]
    assert set(serve.details_["applications"]) == {"master", "hello", "model-a"}


def test_a_model_serve_refuses_fails_on_its_own_and_the_pass_and_the_others_go_on() -> None:
    serve = _Serve(fail={"model-bad"})
    reconciler = _reconciler([_doc("bad"), _doc("good")], serve)
    asyncio.run(reconciler.reconcile_once())
    assert "model-good" in serve.details_["applications"]
    state = reconciler.state
    assert state.status_of("model-bad", []) == {"status": "DEPLOY_FAILED", "replicas": 0,
                                               "reason": "RuntimeError: Serve refused model-bad"}
    assert state.last_error is None  # what the master's health reads
    serve.fail = set()
    asyncio.run(reconciler.reconcile_once())  # retried on the next pass
    assert "model-bad" not in state.failed and serve.calls.count(("deploy", "model-bad")) == 2


class _MarkedStore(_Store):
    """A registry whose serving marker follows its documents, as ModelStore's does."""

    async def serving_marker(self) -> list[tuple[str, int, int | None]]:
        return sorted((d["name"], d["version"], None) for d in self.docs)


def test_a_registration_starts_the_next_pass_at_once_rather_than_after_the_interval() -> None:
    serve = _Serve()
    docs = [_doc("a")]
    reconciler = Reconciler(_MarkedStore(docs), serve, interval_s=60, apps=serve,  # type: ignore[arg-type]
                            notice_s=0.01)

    async def deployed(app: str) -> None:
        while ("deploy", app) not in serve.calls:
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        passes = asyncio.create_task(reconciler.run_forever())
        try:
            await asyncio.wait_for(deployed("model-a"), 5)
            docs.append(_doc("b"))  # registered after the first pass: the next is 60 s away
            await asyncio.wait_for(deployed("model-b"), 5)
        finally:
            passes.cancel()

    asyncio.run(scenario())  # well within the 60 s interval
