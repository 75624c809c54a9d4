from __future__ import annotations

from typing import Any

from seedserve.deployments.serve_config import (
    deploy_config,
    deployed_configs,
    master_application,
    model_application,
    model_applications,
    model_apps_differ,
)


def _doc(name: str, version: int = 1, sha: str = "abc") -> dict[str, Any]:
    manifest = {"name": name, "inputs": [{"name": "x", "shape": [-1, 4]}], "outputs": [{"name": "y"}],
                "scaling": {"min_replicas": 0, "max_replicas": 3, "num_cpus": 0.2}}
    return {"name": name, "version": version, "manifest": manifest, "artifact": {"sha256": sha}}


def _app(doc: dict[str, Any]) -> dict[str, Any]:
    return model_application(doc)


def test_each_model_gets_its_own_prefix_and_autoscaling_from_its_manifest() -> None:
    app = _app(_doc("mlp"))
    assert app["name"] == "model-mlp" and app["route_prefix"] == "/models/mlp"
    deployment = app["deployments"][0]
    assert deployment["autoscaling_config"]["min_replicas"] == 0
    assert deployment["autoscaling_config"]["initial_replicas"] == 1
    assert deployment["ray_actor_options"] == {"num_cpus": 0.2}


def test_a_fixed_replica_count_gets_no_autoscaler_but_its_other_versions_still_scale_to_zero() -> None:
    doc = _doc("fixed")
    doc["manifest"]["scaling"] = {"min_replicas": 2, "max_replicas": 2}
    deployment = _app(doc)["deployments"][0]
    assert deployment["num_replicas"] == 2 and "autoscaling_config" not in deployment
    other = model_application(doc, own_route=True)["deployments"][0]
    assert "num_replicas" not in other
    assert other["autoscaling_config"]["min_replicas"] == 0 and other["autoscaling_config"]["max_replicas"] == 2


def test_the_config_always_carries_the_master_first() -> None:
    master = master_application(mongo_uri="m", database="d", dashboard_url="http://x", reconcile_interval_s=1)
    config = deploy_config({"port": 8000}, master, [_app(_doc("a")), _app(_doc("b"))])
    assert [a["name"] for a in config["applications"]] == ["master", "model-a", "model-b"]


def test_differences_are_seen_in_models_added_removed_or_changed_only() -> None:
    desired = [_app(_doc("a")), _app(_doc("b"))]
    deployed = {app["name"]: app for app in desired} | {"master": {"anything": 1}}
    assert not model_apps_differ(desired, deployed)
    assert model_apps_differ(desired[:1], deployed)
    assert model_apps_differ(desired + [_app(_doc("c"))], deployed)
    assert model_apps_differ([_app(_doc("a", version=2)), desired[1]], deployed)
    assert model_apps_differ([_app(_doc("a", sha="new")), desired[1]], deployed)


def test_applications_being_deleted_count_as_gone() -> None:
    desired = [_app(_doc("a"))]
    details = {"applications": {
        "master": {"status": "RUNNING", "deployed_app_config": {"name": "master"}},
        "model-a": {"status": "DEPLOYING", "deployed_app_config": desired[0]},
        "model-old": {"status": "DELETING", "deployed_app_config": _app(_doc("old"))},
    }}
    deployed = deployed_configs(details)
    assert set(deployed) == {"master", "model-a"}
    assert not model_apps_differ(desired, deployed)


def test_model_deployments_carry_the_manifests_scaling_and_admission() -> None:
    from seedserve.deployments.serve_config import model_application

    doc = {
        "name": "m", "version": 1, "artifact": {"sha256": "ab"},
        "manifest": {"name": "m", "inputs": [{"name": "x", "shape": [-1, 2]}], "outputs": [{"name": "y"}],
                     "scaling": {"min_replicas": 0, "max_replicas": 3, "upscale_delay_s": 1, "downscale_delay_s": 4,
                                 "metrics_window_s": 2, "max_ongoing_requests": 4, "max_queued_requests": 10},
                     "batching": {"max_batch_size": 8}},
    }
    deployment = model_application(doc)["deployments"][0]
    autoscaling = deployment["autoscaling_config"]
    assert (autoscaling["min_replicas"], autoscaling["initial_replicas"], autoscaling["max_replicas"]) == (0, 1, 3)
    assert (autoscaling["upscale_delay_s"], autoscaling["downscale_delay_s"]) == (1, 4)
    assert autoscaling["look_back_period_s"] == 2 and autoscaling["metrics_interval_s"] == 0.5
    # Serve passes the replica every query it could admit: two batches of 8, plus 10 queued, plus one to refuse.
    assert deployment["max_ongoing_requests"] == 16 + 10 + 1


def _model(name: str, latest: int, pinned: int | None = None) -> dict[str, Any]:
    return {"name": name, "latest": latest, "pinned": pinned}


def _routes(models: list[dict[str, Any]], versions: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    apps = model_applications(models, versions)
    return {app["route_prefix"]: (app["args"]["version"], app["deployments"][0]["autoscaling_config"]["min_replicas"])
            for app in apps}


def test_the_endpoint_serves_the_latest_version_and_every_other_version_has_its_own_route_scaled_to_zero() -> None:
    versions = [_doc("a", 1), _doc("a", 2, sha="two"), _doc("b", 1)]
    assert _routes([_model("a", 2), _model("b", 1)], versions) == {
        "/models/a": (2, 0), "/models/a/versions/1": (1, 0), "/models/b": (1, 0),
    }
    apps = model_applications([_model("a", 2)], versions)
    assert [app["name"] for app in apps] == ["model-a", "model-a.v1"]
    assert apps[1]["deployments"][0]["autoscaling_config"]["initial_replicas"] == 0


def test_a_pin_moves_the_endpoint_and_gives_the_latest_its_own_route() -> None:
    versions = [_doc("a", 1), _doc("a", 2, sha="two")]
    routes = _routes([_model("a", 2, pinned=1)], versions)
    assert routes["/models/a"][0] == 1 and routes["/models/a/versions/2"][0] == 2
    unpinned = model_applications([_model("a", 2)], versions)
    pinned = model_applications([_model("a", 2, pinned=1)], versions)
    assert model_apps_differ(pinned, {app["name"]: app for app in unpinned})


def test_a_model_whose_default_version_is_not_stored_yet_is_not_deployed() -> None:
    assert _routes([_model("a", 2)], [_doc("a", 1)]) == {}
