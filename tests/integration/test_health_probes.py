"""Health for probes on the real stack: the master's and the manager's
``/healthz`` answer 503 naming the component that is down (here the
database, stopped with SIGSTOP and resumed) and 200 again once it is back;
``/livez`` stays 200 meanwhile; a model whose application failed to deploy
does not make either unhealthy and is not named there, but shows in its own
status."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from seedserve.client import ManagerClient
from seedserve.client.handler import package_handler
from tests.conftest import VENV_BIN, System
from tests.helpers import MLP_MANIFEST, eventually

pytestmark = pytest.mark.integration

#: A handler that loads in the manager's test-load (so it registers) and
#: raises in the model replica's sandbox, whose main module is the handler
#: worker: its application fails to deploy.
FAILS_IN_THE_REPLICA = """
import sys

def load(weights):
    main = getattr(sys.modules["__main__"], "__spec__", None)
    if main is not None and main.name == "seedserve.sandbox.worker":
        raise RuntimeError("this handler fails in the replica on purpose")
    return None

def predict(model, inputs):
    import torch
    return torch.zeros(inputs["x"].shape[0], 4)
"""


def _health(http: httpx.Client, system: System) -> dict[str, httpx.Response]:
    return {"master": http.get(system.master_url + "/healthz"), "manager": http.get(system.manager_url + "/healthz")}


def _all_healthy(http: httpx.Client, system: System) -> dict[str, httpx.Response]:
    answers = _health(http, system)
    for who, response in answers.items():
        assert response.status_code == 200, (who, response.text)
        assert response.json()["status"] == "ok" and response.json()["down"] == []
    return answers


def test_healthz_is_503_naming_the_database_while_it_is_stopped_and_200_once_it_is_back(
    system: System, http: httpx.Client
) -> None:
    eventually(lambda: _all_healthy(http, system), timeout_s=60)
    database = int((system.data_dir / "nx-27017.pid").read_text().strip())
    os.kill(database, signal.SIGSTOP)  # alive but not answering: the supervisor does not restart it
    try:
        def database_down() -> None:
            for who, response in _health(http, system).items():
                assert response.status_code == 503, (who, response.text)
                assert "database" in response.json()["down"], (who, response.text)
                assert response.json()["components"]["database"].startswith("unavailable"), who

        eventually(database_down, timeout_s=60)
        for url in (system.master_url, system.manager_url):
            assert http.get(url + "/livez").status_code == 200
        status = subprocess.run([str(VENV_BIN / "seedserve"), "status"], env=system.env, capture_output=True,
                                text=True, timeout=60)
        assert (status.returncode == 1 and "DEGRADED" in status.stdout
                and "down: database" in status.stdout), status.stdout
    finally:
        os.kill(database, signal.SIGCONT)
    eventually(lambda: _all_healthy(http, system), timeout_s=60)


def test_a_failed_model_application_leaves_healthz_200_and_shows_in_its_own_status(
    system: System, http: httpx.Client, tmp_path: Path, registered: list[str]
) -> None:
    name = "health-broken"
    script = tmp_path / "handler.py"
    script.write_text(FAILS_IN_THE_REPLICA)
    artifact = package_handler(script, tmp_path / "broken.zip")
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        key = manager.register(artifact, {**MLP_MANIFEST, "name": name,
                                          "scaling": {"min_replicas": 1, "max_replicas": 1}})
    registered.append(name)
    assert key is not None

    def failed() -> str:
        cluster = http.get(system.master_url + "/cluster", headers=system.operator).json()
        status = str(cluster["applications"].get(f"model-{name}"))
        assert status == "DEPLOY_FAILED", status
        return status

    eventually(failed, timeout_s=150, interval_s=1.0)
    for who, response in _all_healthy(http, system).items():
        assert name not in response.text, who
    # Its own status says it: the index (with its key) and its readiness.
    index = http.post(system.master_url + "/v2/repository/index", headers={"Authorization": f"Bearer {key}"}).json()
    assert index == [{"name": name, "version": "1", "state": "UNAVAILABLE",
                      "reason": "its application is DEPLOY_FAILED"}]
    ready = http.get(system.master_url + f"/v2/models/{name}/ready", headers={"Authorization": f"Bearer {key}"})
    assert ready.status_code == 503 and "DEPLOY_FAILED" in ready.json()["error"]

