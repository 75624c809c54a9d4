"""seedserve beside other Serve applications and under KubeRay (issue 16, point 4).

The reconciler deploys and deletes only its own model applications, one by
one: an application deployed with `serve run` (imperative) and one deployed
with `serve deploy` (declarative, in the one declarative list with the
master, as Serve requires) survive registrations and deletions with their
replicas unchanged. A KubeRay operator restart resubmits the RayService's
`serveConfigV2`; here the manifest's own `serveConfigV2` (deploy/kubernetes/
rayservice.yaml, with this test cluster's ports, database and token hashes
filled in where the manifest takes them from the pod) goes to Serve's REST
API as KubeRay sends it, and the model replicas keep their actor ids. That
submission holds the master alone, so, by Serve's rules, it removes the
`serve deploy` application (KubeRay owns the declarative list) and keeps the
`serve run` one. Real Ray, Serve, HTTP and database; nothing mocked.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from seedserve.client import Client, ManagerClient
from seedserve.deployments.serve_api import ray_auth_headers
from tests.conftest import VENV_BIN, System
from tests.helpers import MLP_MANIFEST, eventually, make_mlp, save_torchscript

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BESIDE = ROOT / "tests" / "data" / "beside"


def _dashboard(system: System) -> str:
    return f"http://127.0.0.1:{system.env['SEEDSERVE_DASHBOARD_PORT']}"


def _details(system: System) -> dict[str, Any]:
    response = httpx.get(f"{_dashboard(system)}/api/serve/applications/", headers=ray_auth_headers(), timeout=30)
    response.raise_for_status()
    details: dict[str, Any] = response.json()
    return details


def _actor_ids(system: System, app: str) -> set[str]:
    """The actor ids of ``app``'s running replicas (empty while it has none)."""
    application = _details(system)["applications"].get(app) or {}
    return {replica["actor_id"] for deployment in (application.get("deployments") or {}).values()
            for replica in deployment.get("replicas") or [] if replica["state"] == "RUNNING"}


def _running(system: System, *apps: str) -> dict[str, set[str]]:
    """Each of ``apps`` RUNNING with its replicas' actor ids."""
    applications = _details(system)["applications"]
    assert all(applications.get(app, {}).get("status") == "RUNNING" for app in apps), \
        {app: applications.get(app, {}).get("status") for app in apps}
    ids = {app: _actor_ids(system, app) for app in apps}
    assert all(ids.values()), ids
    return ids


def _serve_cli(system: System, *args: str) -> subprocess.Popen[str]:
    """Start Ray's `serve` command (see :func:`_succeeds`)."""
    # Ray's CLI presents the cluster token in token mode (`ray start --head` turned it on).
    return subprocess.Popen([str(VENV_BIN / "serve"), *args], env={**system.env, "RAY_AUTH_MODE": "token"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=BESIDE)


def _succeeds(command: subprocess.Popen[str]) -> None:
    output, _ = command.communicate(timeout=180)
    assert command.returncode == 0, output[-3000:]


def _declarative_config(system: System, *extra: dict[str, Any]) -> dict[str, Any]:
    """Serve's declarative config as it runs now (the master as `seedserve up`
    submitted it), plus ``extra`` applications."""
    details = _details(system)
    master = details["applications"]["master"]["deployed_app_config"]
    return {"proxy_location": details["proxy_location"],
            "http_options": {"host": details["http_options"]["host"], "port": details["http_options"]["port"]},
            "applications": [master, *extra]}


def _kuberay_config(system: System) -> dict[str, Any]:
    """The manifest's serveConfigV2 as KubeRay would submit it to this cluster."""
    manifest = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "rayservice.yaml").read_text())
    config: dict[str, Any] = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    running = _details(system)
    (master,) = config["applications"]
    assert master["name"] == "master" and "mongo_uri" not in master["args"]
    # In the pod the database URI comes from its environment (SEEDSERVE_MONGO_URI).
    # After an operator restart KubeRay resubmits what the cluster already
    # runs, so the master's args are this cluster's.
    master["args"].update(running["applications"]["master"]["deployed_app_config"]["args"])
    config["http_options"] = {"host": running["http_options"]["host"], "port": running["http_options"]["port"]}
    return config


def test_applications_beside_seedserve_and_a_kuberay_resubmission_leave_the_models_running(
    system: System, tmp_path: Path, registered: list[str]
) -> None:
    ray_address = f"127.0.0.1:{system.env['SEEDSERVE_RAY_PORT']}"
    try:
        _beside_and_kuberay(system, tmp_path, registered, ray_address)
    finally:
        # Later tests of the session see only seedserve's applications.
        code = (f"import ray; from ray import serve; ray.init(address={ray_address!r}, namespace='serve'); "
                "[serve.delete(n) for n in ('beside-run', 'beside-deploy')]")
        subprocess.run([str(VENV_BIN / "python"), "-c", code], env={**system.env, "RAY_AUTH_MODE": "token"},
                       capture_output=True, timeout=120)


def _beside_and_kuberay(system: System, tmp_path: Path, registered: list[str], ray_address: str) -> None:
    artifact = save_torchscript(make_mlp(seed=3), tmp_path / "m.pt")
    beside_deploy = {"name": "beside-deploy", "route_prefix": "/beside-deploy", "import_path": "beside:build",
                     "runtime_env": {"working_dir": f"local://{BESIDE}"}}
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(_declarative_config(system, beside_deploy)))
    commands = [
        _serve_cli(system, "run", "beside:hello", "--working-dir", str(BESIDE), "--app-dir", str(BESIDE),
                   "--name", "beside-run", "--route-prefix", "/beside-run", "--non-blocking", "--address", ray_address),
        _serve_cli(system, "deploy", str(tmp_path / "serve.yaml"), "--address", _dashboard(system)),
    ]
    for command in commands:
        _succeeds(command)
    before = eventually(lambda: _running(system, "beside-run", "beside-deploy"), timeout_s=120, interval_s=1)

    keys: dict[str, str] = {}
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        for name in ("keep", "drop-1", "drop-2"):
            registered.append(name)
            keys[name] = manager.register(artifact, {**MLP_MANIFEST, "name": name,
                                                     "scaling": {"min_replicas": 1, "max_replicas": 1}})
        with Client(system.master_url, keys["keep"], timeout=30) as client:
            eventually(lambda: client.predict("keep", x=[[0.5] * 16]), timeout_s=120)
        for name in ("drop-1", "drop-2"):
            manager.delete_model(name)
        eventually(lambda: _assert_gone(system, "model-drop-1", "model-drop-2"), timeout_s=60, interval_s=1)
        registered.append("late")
        keys["late"] = manager.register(artifact, {**MLP_MANIFEST, "name": "late",
                                                   "scaling": {"min_replicas": 1, "max_replicas": 1}})
    models = eventually(lambda: _running(system, "model-keep", "model-late"), timeout_s=120, interval_s=1)
    assert _running(system, "beside-run", "beside-deploy") == before  # never redeployed
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{system.master_url}/beside-run").text == "from serve run"
        assert http.get(f"{system.master_url}/beside-deploy").text == "from serve deploy"

    # KubeRay after an operator restart: PUT of serveConfigV2, master only.
    response = httpx.put(f"{_dashboard(system)}/api/serve/applications/", json=_kuberay_config(system),
                         headers=ray_auth_headers(), timeout=60)
    assert response.status_code == 200, response.text
    eventually(lambda: _assert_gone(system, "beside-deploy"), timeout_s=60, interval_s=1)
    assert _running(system, "model-keep", "model-late", "beside-run") == {**models, "beside-run": before["beside-run"]}
    with Client(system.master_url, keys["keep"], timeout=30) as client:
        assert len(client.predict("keep", x=[[0.5] * 16])["y"][0]) == 4
    # Several reconcile passes later (the interval is 1 s), still the same replicas.
    health = eventually(lambda: _healthy(system), timeout_s=30, interval_s=1)
    assert health["components"]["reconciler"]["error"] is None
    assert _actor_ids(system, "model-keep") == models["model-keep"]


def _assert_gone(system: System, *apps: str) -> None:
    present = set(_details(system)["applications"]) & set(apps)
    assert not present, present


def _healthy(system: System) -> dict[str, Any]:
    health: dict[str, Any] = httpx.get(f"{system.master_url}/healthz", timeout=10).json()
    assert health["status"] == "ok", json.dumps(health)
    return health
