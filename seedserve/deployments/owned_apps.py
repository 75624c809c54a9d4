"""The Serve applications seedserve owns, and how they change, one at a time.

Serve has one declarative application list (``serve deploy``, ``PUT
/api/serve/applications/``, KubeRay's ``serveConfigV2``): a declarative
submission deletes every declarative application it leaves out, but never an
imperative one (``serve.run``). So the master stays declarative, in whoever's
config deploys it, and its reconciler deploys each model application
imperatively and deletes it by name: applications deployed beside seedserve
survive every reconcile, and a resubmitted ``serveConfigV2`` (a KubeRay
operator restart) neither removes nor restarts the models.

An imperative deploy restarts an application's replicas every time (Serve
gives it a new random version), so a model application is redeployed only
when what it should run changed. What it was deployed with is read back from
Serve: its replicas carry a fingerprint of their application's config in
their environment (``runtime_env.env_vars``), which Serve reports in the
deployment's ``ray_actor_options``. That marker is also what says an
application is seedserve's: nothing without it is touched, except model
applications an earlier seedserve deployed declaratively (redeployed once).
See docs/notes/serve-coexistence.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from seedserve.deployments.serve_config import MODEL_APP_PREFIX

__all__ = ["FINGERPRINT_ENV", "Changes", "ServeApps", "fingerprinted", "owned_fingerprints", "plan_changes"]

#: The environment variable that carries a model application's fingerprint in its replicas.
FINGERPRINT_ENV = "SEEDSERVE_APP_FINGERPRINT"
_MODEL_IMPORT_PATH = "seedserve.deployments.model_server:build"


def fingerprint(app: Mapping[str, Any]) -> str:
    """A digest of a model application's whole config (as
    ``serve_config.model_application`` builds it)."""
    return hashlib.sha256(json.dumps(app, sort_keys=True, default=str).encode()).hexdigest()[:24]


def fingerprinted(app: Mapping[str, Any]) -> dict[str, Any]:
    """``app`` with its fingerprint in its replicas' environment. An explicit
    runtime_env also keeps the deploying master's own runtime_env (its
    environment variables) from becoming the model replicas' default."""
    (deployment,) = app["deployments"]
    options = dict(deployment.get("ray_actor_options") or {})
    options["runtime_env"] = {"env_vars": {FINGERPRINT_ENV: fingerprint(app)}}
    return {**app, "deployments": [{**deployment, "ray_actor_options": options}]}


def _fingerprint_of(app: Mapping[str, Any]) -> str | None:
    """The fingerprint an application's replicas were deployed with, from
    Serve's details of it (``GET /api/serve/applications/``), if any."""
    for deployment in (app.get("deployments") or {}).values():
        options = (deployment.get("deployment_config") or {}).get("ray_actor_options") or {}
        env = (options.get("runtime_env") or {}).get("env_vars") or {}
        if FINGERPRINT_ENV in env:
            return str(env[FINGERPRINT_ENV])
    return None


def owned_fingerprints(details: Mapping[str, Any]) -> dict[str, str | None]:
    """seedserve's model applications in Serve's details -> the fingerprint
    each runs (None: a declarative one of an earlier seedserve, which has
    none). Applications being deleted are left out: they count as gone."""
    owned: dict[str, str | None] = {}
    for name, app in (details.get("applications") or {}).items():
        if app.get("status") == "DELETING":
            continue
        if (found := _fingerprint_of(app)) is not None:
            owned[name] = found
        elif name.startswith(MODEL_APP_PREFIX) and \
                (app.get("deployed_app_config") or {}).get("import_path") == _MODEL_IMPORT_PATH:
            owned[name] = None
    return owned


@dataclass(frozen=True)
class Changes:
    """What one reconcile pass changes: applications to (re)deploy, with
    their fingerprint, and names to delete."""

    deploy: list[dict[str, Any]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)


def plan_changes(desired: Iterable[Mapping[str, Any]], details: Mapping[str, Any]) -> Changes:
    """The changes that turn seedserve's applications in Serve (``details``)
    into ``desired``: deploy what is missing or runs another config, delete
    what seedserve owns and no longer wants. An application still being
    deleted is deployed again once it is gone (a later pass)."""
    owned = owned_fingerprints(details)
    deleting = {name for name, app in (details.get("applications") or {}).items() if app.get("status") == "DELETING"}
    desired = list(desired)
    deploy = [fingerprinted(app) for app in desired
              if app["name"] not in deleting and owned.get(app["name"], "") != fingerprint(app)]
    return Changes(deploy=deploy, delete=sorted(set(owned) - {app["name"] for app in desired}))


class ServeApps:
    """Deploys and deletes single Serve applications through Serve's Python
    API, from a process connected to Ray (the master's replica). Both calls
    return once the controller has the change, not when replicas run."""

    async def deploy(self, app: Mapping[str, Any]) -> None:
        """Deploy (or replace) one model application, imperatively."""
        await asyncio.to_thread(self._deploy, app)

    async def delete(self, name: str) -> None:
        from ray import serve

        await asyncio.to_thread(serve.delete, name, _blocking=False)

    @staticmethod
    def _deploy(app: Mapping[str, Any]) -> None:
        from ray import serve
        from ray.serve.api import RunTarget

        # Imported on the first deploy: the model server brings torch.
        from seedserve.deployments.model_server import application

        target = RunTarget(target=application(app), name=app["name"], route_prefix=app["route_prefix"])
        serve.run_many([target], wait_for_ingress_deployment_creation=False, wait_for_applications_running=False)
