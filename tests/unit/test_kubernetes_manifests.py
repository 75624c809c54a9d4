"""The KubeRay manifests: their Serve config is one Serve accepts and deploys
the master as `seedserve up` does (pinned to the head), every worker group
advertises a worker type of the catalog, the database secret is only where
the master and the manager run, and the manager knows the master's URL. (No
Kubernetes here: this checks the files, not a cluster.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from seedserve.deployments.serve_config import HEAD_RESOURCE, master_application, mongo_uri_from, worker_resource
from seedserve.profiler.catalog import load_catalog

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"


def _rayservice() -> dict[str, Any]:
    return dict(yaml.safe_load((KUBERNETES / "rayservice.yaml").read_text()))


def _groups() -> list[tuple[str, dict[str, Any]]]:
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    return [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]


def _env(group: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in group["template"]["spec"]["containers"][0]["env"]}


def _advertised(group: dict[str, Any]) -> list[str]:
    if "resources" not in group["rayStartParams"]:
        return []
    resources = yaml.safe_load(yaml.safe_load(group["rayStartParams"]["resources"]))
    return [key.removeprefix(worker_resource("")) for key in resources if key.startswith(worker_resource(""))]


def test_the_serve_config_is_valid_for_serve_and_runs_the_master_as_seedserve_up_does_on_the_head() -> None:
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load(_rayservice()["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(config)
    (master,) = config["applications"]
    expected = master_application(mongo_uri=None, database="seedserve", dashboard_url="http://127.0.0.1:8265",
                                  reconcile_interval_s=2.0)
    assert {k: master[k] for k in ("name", "route_prefix", "import_path", "deployments")} == \
        {k: expected[k] for k in ("name", "route_prefix", "import_path", "deployments")}
    assert master["deployments"][0]["ray_actor_options"]["resources"] == {HEAD_RESOURCE: 0.001}
    assert "mongo_uri" not in master["args"] and master["args"]["dashboard_url"] == "http://127.0.0.1:8265"


def test_every_worker_type_a_manifest_advertises_is_in_the_catalog() -> None:
    catalog = {worker.name for worker in load_catalog().types}
    advertised = {name: _advertised(group) for name, group in _groups()}
    unknown = {name: types for name, types in advertised.items() if not set(types) <= catalog}
    assert not unknown, f"worker types not in configs/workers.yaml: {unknown}"
    # A worker group is named after the one type it advertises; the head,
    # which holds the database secret, advertises none.
    assert all(types == [name] for name, types in advertised.items() if name != "head"), advertised
    assert advertised.pop("head") == [] and advertised


def test_the_database_secret_is_on_the_head_and_the_manager_only() -> None:
    for name, group in _groups():
        env = _env(group)
        assert "RAY_SERVE_ENABLE_HA_PROXY" in env, name
        assert ("SEEDSERVE_MONGO_URI" in env) == (name == "head"), name
        assert "SEEDSERVE_GPU_STAND_IN" not in env, name  # a test-only stand-in, never in production
    assert _rayservice()["spec"]["rayClusterConfig"]["authOptions"]["mode"] == "token"
    manager = yaml.safe_load_all((KUBERNETES / "manager.yaml").read_text())
    (container,) = next(d for d in manager if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["SEEDSERVE_MONGO_URI"]["valueFrom"]["secretKeyRef"] == {"name": "seedserve", "key": "mongo-uri"}
    # KubeRay's Service for the Serve port of the RayService named in rayservice.yaml.
    assert env["SEEDSERVE_MASTER_URL"]["value"] == f"http://{_rayservice()['metadata']['name']}-serve-svc:8000"


def test_the_database_uri_comes_from_the_args_else_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEEDSERVE_MONGO_URI", raising=False)
    assert mongo_uri_from({"mongo_uri": "mongodb://a"}) == "mongodb://a"
    with pytest.raises(ValueError, match="SEEDSERVE_MONGO_URI"):
        mongo_uri_from({})
    monkeypatch.setenv("SEEDSERVE_MONGO_URI", "mongodb://from-env")
    assert mongo_uri_from({}) == "mongodb://from-env"
