"""Fixtures for real components: the embedded MongoDB-wire server, and a whole
seedserve system started with the real ``seedserve up``."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pymongo
import pytest

from tests.helpers import free_port, free_ports

VENV_BIN = Path(sys.executable).parent

# Every system a test starts inherits this: no background calibration sweeps
# beside the tests (tests/integration/test_autocalibrate.py runs one itself).
os.environ.setdefault("SEEDSERVE_AUTO_CALIBRATE", "false")


@dataclass
class MongoServer:
    uri: str
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    """The embedded MongoDB-wire server (nx-27017) on a free port, over a socket."""
    data = tmp_path_factory.mktemp("mongo")
    port = free_port()
    process = subprocess.Popen(
        [str(VENV_BIN / "nx-27017"), "--db", str(data / "test.db"), "--port", str(port),
         "--pid-file", str(data / "nx.pid"), "--log-file", str(data / "nx.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    uri = f"mongodb://127.0.0.1:{port}"
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=500)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.admin.command("ping")
            break
        except pymongo.errors.PyMongoError as exc:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"nx-27017 did not start; see {data / 'nx.log'}") from exc
            time.sleep(0.1)
    client.close()
    yield MongoServer(uri, process)
    process.terminate()
    process.wait(10)


@dataclass
class System:
    """A running ``seedserve up`` with its own ports and data directory."""

    data_dir: Path
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)

    @property
    def master_url(self) -> str:
        return f"http://127.0.0.1:{self.env['SEEDSERVE_MASTER_PORT']}"

    @property
    def manager_url(self) -> str:
        return f"http://127.0.0.1:{self.env['SEEDSERVE_MANAGER_PORT']}"

    @property
    def grpc_target(self) -> str:
        """``host:port`` of the KServe v2 gRPC inference service."""
        return f"127.0.0.1:{self.env['SEEDSERVE_GRPC_PORT']}"

    @property
    def mongo_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.env['SEEDSERVE_DB_PORT']}"

    @property
    def admin_token(self) -> str:
        return self.env.get("SEEDSERVE_ADMIN_TOKEN") or (self.data_dir / "admin-token").read_text().strip()

    @property
    def metrics_token(self) -> str:
        return self.env["SEEDSERVE_METRICS_TOKEN"]

    @property
    def operator(self) -> dict[str, str]:
        """Headers that may read the master's /cluster, /metrics and /-/routes."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    def start(self, timeout_s: float = 300) -> None:
        self.starts += 1
        out = open(self.log, "ab")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "seedserve"), "up"], env=self.env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while "seedserve is up" not in self.log.read_text(errors="replace").split("== start")[-1]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"seedserve up failed:\n{self.log.read_text(errors='replace')[-5000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        with open(self.log, "a") as out:
            out.write(f"\n== start {self.starts + 1}\n")

    def restart(self) -> None:
        self.stop()
        self.start()

    def replicas(self, app: str, deployment: str = "ModelServer") -> list[dict[str, Any]]:
        """The RUNNING replicas of ``app``'s ``deployment`` (with ``pid`` and
        ``node_id``), as Serve's REST API reports them."""
        from seedserve.deployments.serve_api import ray_auth_headers

        dashboard = f"http://127.0.0.1:{self.env['SEEDSERVE_DASHBOARD_PORT']}"
        details = httpx.get(f"{dashboard}/api/serve/applications/", headers=ray_auth_headers(), timeout=10).json()
        application = details["applications"].get(app)
        if application is None:
            return []
        return [r for r in application["deployments"][deployment]["replicas"] if r["state"] == "RUNNING"]


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """The whole system, started once per test session by the real `seedserve up`."""
    data_dir = tmp_path_factory.mktemp("seedserve")
    env = dict(os.environ)
    env.update(
        {
            "SEEDSERVE_DATA_DIR": str(data_dir),
            **dict(zip(
                ("SEEDSERVE_MASTER_PORT", "SEEDSERVE_MANAGER_PORT", "SEEDSERVE_DB_PORT", "SEEDSERVE_RAY_PORT",
                 "SEEDSERVE_DASHBOARD_PORT", "SEEDSERVE_GRPC_PORT"),
                map(str, free_ports(6)),
                strict=True,
            )),
            # Away from the default block (20000) so a running system does not collide.
            "SEEDSERVE_INTERNAL_PORT_BASE": "23000",
            "SEEDSERVE_RECONCILE_INTERVAL_S": "1.0",
            # Replicas report measured latency every 2 s instead of 30.
            "SEEDSERVE_LATENCY_REPORT_S": "2",
            # A sandbox of user code may use 1 GiB (not 4): the hostile tenant's test meets it sooner.
            "SEEDSERVE_SANDBOX_MEMORY_BYTES": str(2**30),
            # Given through the environment (not the data directory's file), so
            # tests can check that no Ray process inherits them.
            "SEEDSERVE_ADMIN_TOKEN": "adm_" + secrets.token_urlsafe(32),
            "SEEDSERVE_METRICS_TOKEN": "mt_" + secrets.token_urlsafe(32),
            # seedserve's log lines as json, so that tests/integration/test_observability.py parses them all.
            "SEEDSERVE_LOG_FORMAT": "json",
        }
    )
    env.pop("SEEDSERVE_MONGO_URI", None)
    env.pop("RAY_ADDRESS", None)
    system = System(data_dir, env, data_dir / "up.log")
    system.start()
    yield system
    system.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:
        yield client


@pytest.fixture
def registered(system: System) -> Iterator[list[str]]:
    """Names of models a test registers (it appends them); deleted afterwards,
    since replicas reserve CPU on the 2-CPU node."""
    from seedserve.client import ManagerClient
    from seedserve.errors import NotFound

    names: list[str] = []
    yield names
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        for name in names:
            with contextlib.suppress(NotFound):  # the test failed before registering it
                manager.delete_model(name)
