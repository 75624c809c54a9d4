from __future__ import annotations

from typing import Any

from seedserve.deployments.serve_config import (
    deploy_config,
    master_application,
    model_application,
    model_applications,
)
from tests.unit.test_owned_apps import plan_changes, serve_details


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
    # With 4 reserved CPUs the replica may run 4 calls at once: a batch for each and one filling.
    doc["manifest"]["scaling"]["num_cpus"] = 4
    assert model_application(doc)["deployments"][0]["max_ongoing_requests"] == 5 * 8 + 10 + 1


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
    changes = plan_changes(pinned, serve_details(unpinned))
    assert [app["name"] for app in changes.deploy] == ["model-a", "model-a.v2"] and changes.delete == ["model-a.v1"]


def test_a_model_whose_default_version_is_not_stored_yet_is_not_deployed() -> None:
    assert _routes([_model("a", 2)], [_doc("a", 1)]) == {}


# ---- GPU worker types (issue 16, point 3)

from seedserve.codecs import Manifest  # noqa: E402
from seedserve.deployments.reconciler import ReconcilerState  # noqa: E402
from seedserve.deployments.serve_config import actor_options, pending_reason, replica_failure  # noqa: E402
from seedserve.profiler.catalog import load_catalog  # noqa: E402

GPU_TYPES = load_catalog().gpu_types()


def _on(worker_type: str, **scaling: Any) -> dict[str, Any]:
    doc = _doc("g")
    doc["manifest"]["scaling"] = {"worker_type": worker_type, "num_cpus": 0.2, **scaling}
    return doc


def _node(alive: bool = True, **resources: float) -> dict[str, Any]:
    return {"NodeID": "n", "Alive": alive, "Resources": {"CPU": 2.0, **resources}}


def test_the_catalog_names_each_gpu_type_s_accelerator_as_ray_does() -> None:
    from ray.util.accelerators import accelerators

    assert GPU_TYPES["nvidia-h200"] == accelerators.NVIDIA_H200 == "H200"
    assert GPU_TYPES["nvidia-l4"] == accelerators.NVIDIA_L4
    assert GPU_TYPES["nvidia-t4"] == accelerators.NVIDIA_TESLA_T4
    assert "cpu-local" not in GPU_TYPES and "c7i-large" not in GPU_TYPES


def test_a_gpu_type_reserves_one_gpu_by_default_and_its_accelerator_type() -> None:
    app = model_application(_on("nvidia-h200"), gpu_types=GPU_TYPES)
    assert app["deployments"][0]["ray_actor_options"] == {
        "num_cpus": 0.2, "resources": {"worker:nvidia-h200": 0.001}, "num_gpus": 1, "accelerator_type": "H200"}
    assert app["args"]["on_gpu"] is True


def test_a_gpu_type_reserves_the_fraction_of_a_gpu_the_manifest_asks_for() -> None:
    options = model_application(_on("nvidia-l4", gpus=0.5), gpu_types=GPU_TYPES)["deployments"][0]["ray_actor_options"]
    assert options["num_gpus"] == 0.5 and options["accelerator_type"] == "L4"


def test_a_cpu_type_gets_no_gpu_even_when_the_manifest_asks_for_one() -> None:
    app = model_application(_on("cpu-local", gpus=1), gpu_types=GPU_TYPES)
    assert app["deployments"][0]["ray_actor_options"] == {"num_cpus": 0.2, "resources": {"worker:cpu-local": 0.001}}
    assert "on_gpu" not in app["args"]
    assert "num_gpus" not in actor_options(Manifest.model_validate(_doc("x")["manifest"]), GPU_TYPES)


def test_a_gpu_type_unknown_to_ray_gets_gpus_but_no_accelerator_type() -> None:
    options = model_application(_on("my-gpu"), gpu_types={"my-gpu": None})["deployments"][0]["ray_actor_options"]
    assert options["num_gpus"] == 1 and "accelerator_type" not in options


def test_ray_serve_accepts_the_gpu_actor_options_in_a_deploy_config() -> None:
    from ray.serve.schema import ServeDeploySchema

    app = model_application(_on("nvidia-l4", gpus=0.5), gpu_types=GPU_TYPES)
    master = master_application(mongo_uri="m", database="d", dashboard_url="http://x", reconcile_interval_s=1)
    schema = ServeDeploySchema.model_validate(deploy_config({"port": 8000}, master, [app]))
    options = schema.applications[1].deployments[0].ray_actor_options
    assert options.num_gpus == 0.5 and options.accelerator_type == "L4"


def test_a_type_no_alive_node_offers_is_pending_with_its_reason() -> None:
    options = actor_options(Manifest.model_validate(_on("nvidia-l4")["manifest"]), GPU_TYPES)
    nodes = [_node(**{"worker:cpu-local": 1000}), _node(alive=False, **{"worker:nvidia-l4": 1000, "GPU": 1})]
    assert pending_reason(options, nodes).startswith("no node offers nvidia-l4;")  # type: ignore[union-attr]


def test_a_node_of_the_type_without_enough_gpus_or_the_accelerator_leaves_it_pending() -> None:
    options = actor_options(Manifest.model_validate(_on("nvidia-l4", gpus=2)["manifest"]), GPU_TYPES)
    reason = pending_reason(options, [_node(**{"worker:nvidia-l4": 1000, "GPU": 1, "accelerator_type:L4": 1})])
    assert reason is not None and reason.startswith("no node offers a GPU of nvidia-l4 (2 per replica)")
    options = actor_options(Manifest.model_validate(_on("nvidia-l4")["manifest"]), GPU_TYPES)
    reason = pending_reason(options, [_node(**{"worker:nvidia-l4": 1000, "GPU": 1, "accelerator_type:T4": 1})])
    assert reason is not None and "has an L4 GPU" in reason


def test_a_node_that_offers_the_type_its_gpus_and_accelerator_can_run_it() -> None:
    options = actor_options(Manifest.model_validate(_on("nvidia-l4", gpus=0.5)["manifest"]), GPU_TYPES)
    assert pending_reason(options, [_node(**{"worker:nvidia-l4": 1000, "GPU": 1, "accelerator_type:L4": 1})]) is None
    cpu = actor_options(Manifest.model_validate(_on("cpu-local")["manifest"]), GPU_TYPES)
    assert pending_reason(cpu, [_node(**{"worker:cpu-local": 1000})]) is None


def test_a_replica_s_error_is_read_from_serve_s_deployment_message() -> None:
    message = ("A replica failed to start with exception. Retrying 2 more time(s). Error:\n"
               "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
               "seedserve.errors.Unavailable: CUDA is not available on this node; it advertises a GPU worker type\n")
    assert replica_failure(message) == "CUDA is not available on this node; it advertises a GPU worker type"
    assert replica_failure("Deploying.") == "Deploying."


def test_the_master_shows_a_model_no_node_can_run_as_pending_and_a_failing_one_with_its_error() -> None:
    state = ReconcilerState(applications={"model-a": "DEPLOYING", "model-b": "DEPLOY_FAILED", "model-c": "RUNNING"},
                            replicas={"model-c": 1},
                            messages={"model-b": "CUDA is not available on this node"},
                            wanted={"model-a": {"num_cpus": 0.1, "resources": {"worker:nvidia-l4": 0.001},
                                                "num_gpus": 1},
                                    "model-b": {"num_cpus": 0.1, "resources": {"worker:nvidia-t4": 0.001},
                                                "num_gpus": 1},
                                    "model-c": {"num_cpus": 0.1}})
    nodes = [_node(**{"worker:nvidia-t4": 1000, "GPU": 1})]
    assert state.status_of("model-a", nodes) == {"status": "PENDING", "replicas": 0,
                                                "reason": pending_reason(state.wanted["model-a"], nodes)}
    assert state.status_of("model-b", nodes) == {"status": "DEPLOY_FAILED", "replicas": 0,
                                                "reason": "CUDA is not available on this node"}
    assert state.status_of("model-c", nodes) == {"status": "RUNNING", "replicas": 1}


def test_the_master_routes_an_application_that_is_running_or_has_a_running_replica() -> None:
    state = ReconcilerState(applications={"model-up": "DEPLOYING", "model-new": "DEPLOYING", "model-ok": "RUNNING",
                                          "model-bad": "DEPLOY_FAILED"},
                            replicas={"model-up": 1, "model-new": 0, "model-ok": 1, "model-bad": 0})
    assert [state.routable(app) for app in ("model-up", "model-new", "model-ok", "model-bad", "model-none")] == [
        True, False, True, False, False]
