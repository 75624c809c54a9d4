"""A Ray worker node lost under load: two nodes of one worker type join the
session's cluster (`seedserve worker join`), a model of that type serves from
them, and every process of the node hosting a replica is SIGKILLed at once
(what losing the machine looks like to Ray). Serve reschedules the lost
replica on the surviving node and queries succeed again, with no operator
action."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks._system import tree_pids
from seedserve.client import Client, ManagerClient
from tests.conftest import VENV_BIN, System
from tests.helpers import MLP_MANIFEST, Load, eventually, make_mlp, save_torchscript

pytestmark = pytest.mark.integration

#: Internal port blocks of the two worker nodes (apart from the head's and
#: the placement test's worker).
PORT_BASES = (26100, 27600)
#: Replicas and traffic must be back this soon after the node is lost.
RECOVERY_DEADLINE_S = 120.0


def test_a_lost_worker_node_has_its_replica_rescheduled_and_traffic_recovers(
    system: System, tmp_path: Path, registered: list[str]
) -> None:
    nodes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for i, base in enumerate(PORT_BASES):
            log = tmp_path / f"node-{i}.log"
            nodes[f"node-{i}"] = subprocess.Popen(
                [str(VENV_BIN / "seedserve"), "worker", "join", "--address",
                 f"127.0.0.1:{system.env['SEEDSERVE_RAY_PORT']}", "--type", "pool", "--num-cpus", "1",
                 "--port-base", str(base), "--log-dir", str(tmp_path / f"node-{i}")],
                env=system.env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
            )
            # One at a time: nodes starting together on one machine race for
            # the same socket names in Ray's session directory.
            eventually(lambda log=log: "worker 'pool' is up" in log.read_text() or _fail("joining"), timeout_s=120,
                       interval_s=1)

        artifact = save_torchscript(make_mlp(seed=5), tmp_path / "m.pt")
        with ManagerClient(system.manager_url, system.admin_token) as manager:
            key = manager.register(artifact, {**MLP_MANIFEST, "name": "nomad", "scaling": {
                "worker_type": "pool", "min_replicas": 2, "max_replicas": 2}})
        registered.append("nomad")
        assert key is not None
        with Client(system.master_url, key, timeout=30) as client:
            eventually(lambda: client.predict("nomad", x=[[0.0] * 16]), timeout_s=120)
        eventually(lambda: len(system.replicas("model-nomad")) == 2 or _fail("not 2 replicas"), timeout_s=120)
        replicas = system.replicas("model-nomad")
        head_node = system.replicas("master", "Master")[0]["node_id"]
        assert head_node not in {r["node_id"] for r in replicas}, "a 'pool' replica ran on the head"

        # The node of the first replica goes; the other pool node survives.
        lost_node = replicas[0]["node_id"]
        lost = next(name for name, process in nodes.items()
                    if replicas[0]["pid"] in tree_pids(process.pid))
        load = Load(system.master_url + "/models/nomad/predict", key)
        load.start()
        try:
            eventually(lambda: load.successes_after(0) >= 20 or _fail("no load yet"), timeout_s=30)
            for pid in tree_pids(nodes[lost].pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            killed_at = time.monotonic()

            def rescheduled() -> None:
                now = system.replicas("model-nomad")
                assert len(now) == 2 and lost_node not in {r["node_id"] for r in now}, now

            eventually(rescheduled, timeout_s=RECOVERY_DEADLINE_S, interval_s=1)
            rescheduled_after = time.monotonic() - killed_at
            mark = time.monotonic()
            eventually(lambda: load.successes_after(mark) >= 20 or _fail("no traffic after"), timeout_s=30)
            time.sleep(3)  # and it keeps succeeding
        finally:
            load.done.set()
            load.join(10)
        after = [ok for t, ok in load.results if t > mark + 1]
        assert after and all(after), f"{after.count(False)} of {len(after)} queries failed after the rescheduling"
        served = [ok for t, ok in load.results if t > killed_at]
        print(f"replica rescheduled {rescheduled_after:.1f} s after the node was lost; "
              f"{served.count(False)} of {len(served)} queries failed meanwhile")
    finally:
        with ManagerClient(system.manager_url, system.admin_token) as manager:
            for name in list(registered):
                manager.delete_model(name)
                registered.remove(name)
        for process in nodes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(90)


def _fail(message: str) -> bool:
    raise AssertionError(message)
