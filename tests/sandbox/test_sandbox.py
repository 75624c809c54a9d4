"""The sandbox with real processes (bubblewrap, cgroups, a network namespace
of the test's own), without Ray: every attack of a hostile handler fails
inside and, as the positive control, succeeds outside."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from seedserve.codecs import Manifest
from seedserve.errors import HandlerError, InvalidArtifact
from seedserve.manager_app.artifact_check import SpareSandbox, check_artifact
from seedserve.sandbox import ALLOWED_ENV, SandboxLimits, sandbox_python
from seedserve.sandbox.handler import SandboxedHandler
from tests.helpers import free_port
from tests.netns import listener_in, namespace

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HOSTILE = REPO / "tests" / "data" / "hostile_handler.py"
MANIFEST = Manifest.model_validate({
    "name": "evil", "inputs": [{"name": "x", "kind": "tensor", "dtype": "float32", "shape": [-1, 4]}],
    "outputs": [{"name": "y"}],
})
SECRET = "st_planted-admin-token-0123456789"
#: The environment the server side has in these tests: what an attack looks for.
SERVER_ENV = {"SEEDSERVE_ADMIN_TOKEN": SECRET, "SEEDSERVE_MONGO_URI": "mongodb://127.0.0.1:1/x"}


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """What the hostile script attacks: a data directory with a token file,
    a listener standing for the database, master, manager and Ray ports, and
    one in a network namespace standing for the outside."""
    data = tmp_path_factory.mktemp("data")
    (data / "admin-token").write_text(SECRET)
    (data / "admin-token").chmod(0o600)
    (data / "seedserve.db").write_bytes(b"rows")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    outside_port = free_port()
    with namespace(41) as ns, listener_in(ns, outside_port):
        yield {"token_file": str(data / "admin-token"), "data_dir": str(data), "checkout": str(REPO),
               "home": str(Path.home()), "db_port": port, "master_port": port, "manager_port": port,
               "ray_port": port, "outside_host": ns.address, "outside_port": outside_port,
               "parent_pid": os.getpid(), "tag": os.urandom(3).hex()}
    server.close()


def _package(tmp_path: Path, targets: dict[str, Any], script: str | None = None) -> Path:
    path = tmp_path / "package.zip"
    with zipfile.ZipFile(path, "w") as package:
        package.writestr("handler.py", script or f"TARGETS = {targets!r}\n" + HOSTILE.read_text())
    return path


def _report(message: str) -> dict[str, list[Any]]:
    return dict(json.loads(message[message.index("REPORT") + len("REPORT"):]))


def _outside(tmp_path: Path, targets: dict[str, Any]) -> dict[str, list[Any]]:
    """The same attacks from an ordinary process with the server's environment."""
    (tmp_path / "targets.json").write_text(json.dumps(targets))
    done = subprocess.run([sys.executable, str(HOSTILE), str(tmp_path / "targets.json")],
                          env={**os.environ, **SERVER_ENV}, capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _leftovers(targets: dict[str, Any]) -> list[Path]:
    return [Path(d) / f"pwned-{targets['tag']}" for d in (targets["checkout"], targets["data_dir"], targets["home"])
            if (Path(d) / f"pwned-{targets['tag']}").exists()]


def test_every_attack_in_load_fails_at_test_load_and_succeeds_outside(tmp_path: Path, targets: dict[str, Any]) -> None:
    loading = {**targets, "in": "load"}
    with pytest.raises(InvalidArtifact) as refused:
        asyncio.run(check_artifact(_package(tmp_path, loading), "handler", MANIFEST))
    inside = _report(refused.value.message)
    assert {name: ok for name, (ok, _) in inside.items()} == dict.fromkeys(inside, 0), inside
    assert not _leftovers(targets)

    outside = _outside(tmp_path, loading)
    for leftover in _leftovers(targets):
        leftover.unlink()
    assert set(outside) == set(inside) and all(ok for ok, _ in outside.values()), outside


def test_memory_past_the_limit_stops_the_test_load_and_passes_outside(tmp_path: Path, targets: dict[str, Any]) -> None:
    limit = 2**30
    hungry = {**targets, "in": "load", "attacks": ["touch_memory"]}
    with pytest.raises(InvalidArtifact, match="more than its memory limit of 1 GiB"):
        asyncio.run(check_artifact(_package(tmp_path, hungry), "handler", MANIFEST,
                                   limits=SandboxLimits(memory_bytes=limit)))
    outside = _outside(tmp_path, {**hungry, "memory_ceiling": limit + 2**28})
    assert outside["touch_memory"][0] == 1, outside


def test_every_attack_in_predict_fails_in_the_replicas_sandbox(tmp_path: Path, targets: dict[str, Any]) -> None:
    handler = SandboxedHandler(_package(tmp_path, targets).read_bytes(), MANIFEST)
    try:
        assert handler({"x": np.zeros((2, 4), np.float32)})["y"].shape == (2, 1)
        with pytest.raises(HandlerError, match="REPORT") as refused:
            handler({"x": np.full((1, 4), 42, np.float32)})
        inside = _report(refused.value.message)
        assert len(inside) == 13 and not any(ok for ok, _ in inside.values()), inside
        assert handler({"x": np.zeros((1, 4), np.float32)})["y"].shape == (1, 1)  # still serving
    finally:
        handler.close()


def test_the_sandboxed_process_runs_as_nobody_with_only_allowed_variables(tmp_path: Path) -> None:
    script = "def load(w):\n    return None\n\ndef predict(m, inputs):\n    return inputs['x'][:, :1]\n"
    os.environ.update(SERVER_ENV)
    try:
        handler = SandboxedHandler(_package(tmp_path, {}, script).read_bytes(), MANIFEST)
    finally:
        for name in SERVER_ENV:
            os.environ.pop(name)
    try:
        assert handler._sandbox is not None and handler._sandbox.cgroup is not None
        pids = [int(p) for p in Path(handler._sandbox.cgroup.procs_files[0]).read_text().split()]
        # The Python process inside (bwrap's own process, outside the sandbox, names the worker too).
        workers = [pid for pid in pids if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:3]
                   == [sandbox_python().encode(), b"-m", b"seedserve.sandbox.worker"]]
        assert workers, pids
        for pid in workers:
            status = Path(f"/proc/{pid}/status").read_text()
            assert "Uid:\t65534\t65534\t65534\t65534" in status and "CapEff:\t0000000000000000" in status
            names = {entry.split(b"=", 1)[0].decode()
                     for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if entry}
            assert names <= {*ALLOWED_ENV, "PATH", "HOME", "TMPDIR", "PYTHONDONTWRITEBYTECODE", "PYTHONNOUSERSITE",
                             "PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PWD"}, names  # PWD: bwrap sets it
            assert SECRET.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
        cgroups = list(handler._sandbox.cgroup.dirs)
    finally:
        handler.close()
    assert not any(path.exists() for path in cgroups)


def test_a_hung_or_lying_handler_is_stopped_and_the_next_call_gets_a_new_process(tmp_path: Path) -> None:
    script = (
        "import os, time\n"
        "def load(w):\n    return None\n\n"
        "def predict(m, inputs):\n"
        "    v = float(inputs['x'][0, 0])\n"
        "    if v == 1:\n        time.sleep(60)\n"
        "    if v == 2:\n        os.write(4, b'\\xff' * 64)\n"  # the frames' descriptor (see worker.main)
        "    if v == 3:\n        os._exit(3)\n"
        "    return inputs['x'][:, :1]\n"
    )
    handler = SandboxedHandler(_package(tmp_path, {}, script).read_bytes(), MANIFEST, call_timeout_s=2)
    try:
        for value, why in ((1, "did not answer within 2 s"), (2, "malformed answer"), (3, "exited")):
            with pytest.raises(HandlerError, match=why):
                handler({"x": np.full((1, 4), value, np.float32)})
            assert handler({"x": np.full((1, 4), 7, np.float32)})["y"].tolist() == [[7.0]]
    finally:
        handler.close()


def test_every_attack_in_load_fails_in_a_spare_sandbox_too(tmp_path: Path, targets: dict[str, Any]) -> None:
    """A spare started ahead (SpareSandbox) is as sandboxed, and serves one
    artifact only: each check takes a spare whose imports are done."""
    loading = {**targets, "in": "load"}

    async def twice() -> list[str]:
        spare = SpareSandbox(delay_s=0, first_delay_s=0)
        spare.start()
        messages = []
        try:
            for _ in range(2):
                assert await _until_ready(spare), "no spare was ready within 120 s"
                with pytest.raises(InvalidArtifact) as refused:
                    await spare.check(_package(tmp_path, loading), "handler", MANIFEST)
                messages.append(refused.value.message)
        finally:
            await spare.aclose()
        return messages

    for message in asyncio.run(twice()):
        inside = _report(message)
        assert {name: ok for name, (ok, _) in inside.items()} == dict.fromkeys(inside, 0), inside
    assert not _leftovers(targets)


async def _until_ready(spare: SpareSandbox, seconds: float = 120.0) -> bool:
    """Whether a spare is ready within ``seconds`` (its imports run at idle priority, so a busy node slows them)."""
    for _ in range(int(seconds * 10)):
        if spare.ready:
            return True
        await asyncio.sleep(0.1)
    return False


def test_a_spare_that_dies_waiting_or_is_never_ready_is_replaced() -> None:
    """A spare killed while it waits is replaced by a new one without a
    test-load; spares that are not ready within the timeout are retried, each
    one discarded with its sandbox."""

    async def killed() -> tuple[int, int]:
        spare = SpareSandbox(delay_s=0, first_delay_s=0, retry_s=0.1)
        spare.start()
        try:
            assert await _until_ready(spare), "no spare was ready within 120 s"
            first = spare._spare
            assert first is not None
            first.process.kill()
            await first.process.wait()
            assert await _until_ready(spare), "no spare replaced the killed one within 120 s"
            assert spare._spare is not None
            assert first.sandbox.stage_dir is None or not Path(first.sandbox.stage_dir).exists()
            return first.process.pid, spare._spare.process.pid
        finally:
            await spare.aclose()

    first_pid, second_pid = asyncio.run(killed())
    assert first_pid != second_pid

    async def never_ready() -> int:
        spare = SpareSandbox(timeout_s=0.001, delay_s=0, first_delay_s=0, retry_s=0.05)
        spare.start()
        try:
            for _ in range(200):
                if spare._failures >= 3:
                    break
                await asyncio.sleep(0.05)
            assert not spare.ready
            return spare._failures
        finally:
            await spare.aclose()

    assert asyncio.run(never_ready()) >= 3
