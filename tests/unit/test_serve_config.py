from __future__ import annotations

from typing import Any

from seedserve.deployments.serve_config import (
    deploy_config,
    deployed_configs,
    master_application,
    model_application,
    model_apps_differ,
)


def _doc(name: str, version: int = 1, sha: str = "abc") -> dict[str, Any]:
    manifest = {"name": name, "inputs": [{"name": "x", "shape": [-1, 4]}], "outputs": [{"name": "y"}],
                "scaling": {"min_replicas": 0, "max_replicas": 3, "num_cpus": 0.2}}
    return {"name": name, "version": version, "manifest": manifest, "artifact": {"sha256": sha}}


def _app(doc: dict[str, Any]) -> dict[str, Any]:
    return model_application(doc, mongo_uri="mongodb://db", database="seedserve")


def test_each_model_gets_its_own_prefix_and_autoscaling_from_its_manifest() -> None:
    app = _app(_doc("mlp"))
    assert app["name"] == "model-mlp" and app["route_prefix"] == "/models/mlp"
    deployment = app["deployments"][0]
    assert deployment["autoscaling_config"]["min_replicas"] == 0
    assert deployment["autoscaling_config"]["initial_replicas"] == 1
    assert deployment["ray_actor_options"] == {"num_cpus": 0.2}


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
    deployment = model_application(doc, mongo_uri="mongodb://x", database="d")["deployments"][0]
    autoscaling = deployment["autoscaling_config"]
    assert (autoscaling["min_replicas"], autoscaling["initial_replicas"], autoscaling["max_replicas"]) == (0, 1, 3)
    assert (autoscaling["upscale_delay_s"], autoscaling["downscale_delay_s"]) == (1, 4)
    assert autoscaling["look_back_period_s"] == 2 and autoscaling["metrics_interval_s"] == 0.5
    # Serve passes the replica every query it could admit: two batches of 8, plus 10 queued, plus one to refuse.
    assert deployment["max_ongoing_requests"] == 16 + 10 + 1
