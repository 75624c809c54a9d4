"""The KubeRay manifests: their Serve config is one Serve accepts, deploys the
master as `seedserve up` does, and every worker group advertises the worker
resource that model placement asks for. (No Kubernetes here: this checks the
files, not a cluster.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from seedserve.deployments.serve_config import master_application, mongo_uri_from, worker_resource

ROOT = Path(__file__).resolve().parents[2]


def _rayservice() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "deploy" / "kubernetes" / "rayservice.yaml").read_text()))


def test_the_serve_config_is_valid_for_serve_and_runs_the_master_without_a_uri_in_it() -> None:
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load(_rayservice()["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(config)
    (master,) = config["applications"]
    expected = master_application(mongo_uri=None, database="seedserve", dashboard_url="http://127.0.0.1:8265",
                                  reconcile_interval_s=2.0)
    assert {k: master[k] for k in ("name", "route_prefix", "import_path")} == \
        {k: expected[k] for k in ("name", "route_prefix", "import_path")}
    assert "mongo_uri" not in master["args"]


def test_every_ray_group_advertises_its_worker_type_and_carries_the_database_secret() -> None:
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    groups = [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]
    for name, group in groups:
        resources = yaml.safe_load(yaml.safe_load(group["rayStartParams"]["resources"]))
        assert any(key.startswith(worker_resource("")) for key in resources), name
        env = {e["name"] for e in group["template"]["spec"]["containers"][0]["env"]}
        assert {"SEEDSERVE_MONGO_URI", "RAY_SERVE_ENABLE_HA_PROXY"} <= env, name
    assert cluster["authOptions"]["mode"] == "token"


def test_the_database_uri_comes_from_the_args_else_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEEDSERVE_MONGO_URI", raising=False)
    assert mongo_uri_from({"mongo_uri": "mongodb://a"}) == "mongodb://a"
    with pytest.raises(ValueError, match="SEEDSERVE_MONGO_URI"):
        mongo_uri_from({})
    monkeypatch.setenv("SEEDSERVE_MONGO_URI", "mongodb://from-env")
    assert mongo_uri_from({}) == "mongodb://from-env"
