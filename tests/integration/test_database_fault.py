"""The embedded database SIGKILLed during a stream of registrations and kept
down for 15 s: the manager answers 503 with a clear message while it is
away, `seedserve up` restarts it, registrations succeed again with no
operator action, and the registry then holds exactly the acknowledged
registrations, none half-written."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pymongo
import pytest

from seedserve.client import Client, ManagerClient
from seedserve.errors import SeedserveError, http_status
from tests.conftest import System
from tests.helpers import MLP_MANIFEST, eventually, make_mlp, save_torchscript

pytestmark = pytest.mark.integration

PREFIX = "dbfault-"
#: How long the database stays down.
OUTAGE_S = 15.0


class Registrations(threading.Thread):
    """Registers models one after another, never retrying; keeps each outcome."""

    def __init__(self, system: System, artifact: Path, until: threading.Event) -> None:
        super().__init__(daemon=True)
        self.system, self.artifact, self.until = system, artifact, until
        self.acknowledged: dict[str, tuple[float, str]] = {}  # name -> (when, key)
        self.refused: dict[str, tuple[float, int | None, str]] = {}  # name -> (when, status, message)

    def run(self) -> None:
        with ManagerClient(self.system.manager_url, self.system.admin_token, timeout=60) as manager:
            i = 0
            while not self.until.is_set():
                name = f"{PREFIX}{i:02d}"
                i += 1
                try:
                    key = manager.register(self.artifact, {**MLP_MANIFEST, "name": name})
                    assert key is not None
                    self.acknowledged[name] = (time.monotonic(), key)
                except SeedserveError as exc:
                    self.refused[name] = (time.monotonic(), http_status(exc), str(exc))
                    time.sleep(0.2)
                except httpx.HTTPError as exc:  # the manager must answer, even while the database is away
                    self.refused[name] = (time.monotonic(), None, f"no answer: {exc!r}")


def _database_pid(system: System) -> int:
    return int((system.data_dir / "nx-27017.pid").read_text().strip())


def test_killing_the_database_during_registrations_keeps_exactly_the_acknowledged_ones(
    system: System, tmp_path: Path, registered: list[str]
) -> None:
    artifact = save_torchscript(make_mlp(seed=11), tmp_path / "m.pt")
    stop = threading.Event()
    stream = Registrations(system, artifact, stop)
    stream.start()
    try:
        eventually(lambda: len(stream.acknowledged) >= 2 or _fail("fewer than 2 registrations yet"), timeout_s=90)
        killed_pid = _database_pid(system)
        # `seedserve up` restarts the database within a second or two, which
        # the manager's database client rides out (it waits 5 s for a server).
        # To see the manager during a longer outage, the supervisor is paused
        # while the database is down (as if its host were rebooting).
        assert system.process is not None
        os.kill(system.process.pid, signal.SIGSTOP)
        try:
            os.kill(killed_pid, signal.SIGKILL)
            killed_at = time.monotonic()
            time.sleep(OUTAGE_S)
        finally:
            os.kill(system.process.pid, signal.SIGCONT)
        # Back by itself: a new database process, and registrations acknowledged again.
        eventually(lambda: _database_pid(system) != killed_pid or _fail("not restarted"), timeout_s=60)
        eventually(lambda: any(t > killed_at for t, _ in stream.acknowledged.values()) or _fail("not recovered"),
                   timeout_s=120)
        eventually(lambda: sum(t > killed_at for t, _ in stream.acknowledged.values()) >= 2 or _fail("one only"),
                   timeout_s=60)
    finally:
        stop.set()
        stream.join(120)
        registered.extend([*stream.acknowledged, *stream.refused])
    assert not stream.is_alive()

    during = {name: r for name, r in stream.refused.items() if r[0] > killed_at}
    print(f"{len(stream.acknowledged)} acknowledged, {len(stream.refused)} refused: "
          + "; ".join(f"{n} +{t - killed_at:.1f} s {status} {m}" for n, (t, status, m) in stream.refused.items()))
    assert during, "no registration was refused: did the kill land while one was running?"
    for name, (_, status, message) in stream.refused.items():
        assert status == 503 and "database" in message, f"{name}: {status} {message}"

    # Exactly the acknowledged registrations: each model whole (model, version
    # and artifact), none of the refused ones, no stray version or artifact.
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        listed = {m.name for m in manager.list_models() if m.name.startswith(PREFIX)}
    assert listed == set(stream.acknowledged)
    db = pymongo.MongoClient(system.mongo_uri, serverSelectionTimeoutMS=5000)["seedserve"]
    versions = list(db["versions"].find({"name": {"$regex": f"^{PREFIX}"}}))
    assert sorted(v["name"] for v in versions) == sorted(stream.acknowledged), "a refused registration left a version"
    files = {f["_id"] for f in db["artifacts.files"].find({})}
    assert all(v["artifact"]["file_id"] in files for v in versions), "an acknowledged version lost its artifact"

    # Their keys serve: the first acknowledged (before the kill) and the last.
    for name in (min(stream.acknowledged), max(stream.acknowledged)):
        with Client(system.master_url, stream.acknowledged[name][1], timeout=30) as client:
            eventually(lambda name=name: client.predict(name, x=[[0.0] * 16]), timeout_s=120)


def _fail(message: str) -> Any:
    raise AssertionError(message)
