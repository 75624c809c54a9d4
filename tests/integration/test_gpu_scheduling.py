"""GPU worker types on real Ray, on a machine without a GPU.

A second Ray node joins with `seedserve worker join --type nvidia-l4
--num-gpus 1`: Ray lets a node declare a GPU it does not have, so placement
is real (the replica reserves half a GPU and the L4's accelerator type).
That node runs with SEEDSERVE_GPU_STAND_IN=cpu, the stand-in for the GPU
this machine lacks: its replica runs the model on the CPU in place of
CUDA. Only that node has it. A third node of type nvidia-t4 joins without
it, where a replica says that CUDA is missing (and the master stays
healthy). A model of a type nobody offers is PENDING with its reason.
Mocked: only the GPU (Ray's declared GPU resource, and the CPU stand-in).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from seedserve.client import Client, ManagerClient
from seedserve.deployments.serve_api import ray_auth_headers
from seedserve.errors import NotFound
from tests.conftest import VENV_BIN, System
from tests.helpers import MLP_MANIFEST, eventually, make_mlp, save_torchscript

pytestmark = pytest.mark.integration

#: Internal port blocks of the two GPU nodes (apart from the other tests' nodes).
PORT_BASES = {"nvidia-l4": 29100, "nvidia-t4": 30600}


def _join(system: System, tmp_path: Path, worker_type: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `seedserve worker join` for ``worker_type`` (see :func:`_wait_up`)."""
    return subprocess.Popen(
        [str(VENV_BIN / "seedserve"), "worker", "join", "--address", f"127.0.0.1:{system.env['SEEDSERVE_RAY_PORT']}",
         "--type", worker_type, "--num-cpus", "1", "--num-gpus", "1", "--port-base", str(PORT_BASES[worker_type]),
         "--log-dir", str(tmp_path / worker_type)],
        env=env, stdout=(tmp_path / f"{worker_type}.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def _wait_up(tmp_path: Path, worker_type: str) -> None:
    log = tmp_path / f"{worker_type}.log"
    eventually(lambda: _assert_in(log.read_text(), f"worker {worker_type!r} is up"), timeout_s=120, interval_s=1)


def _cluster(system: System) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{system.master_url}/cluster", headers=system.operator, timeout=10).json()
    return body


def _node_of(system: System, worker_type: str) -> str:
    """The id (its first 12 hex digits) of the alive node of ``worker_type``, with one Ray GPU."""
    nodes = _cluster(system)["nodes"]
    found = [n for n in nodes if n["alive"] and n["worker_types"] == [worker_type]]
    assert len(found) == 1 and found[0]["resources"].get("GPU") == 1, nodes
    node_id: str = found[0]["id"]
    return node_id


def _model_status(system: System, name: str) -> dict[str, Any]:
    apps = _cluster(system)["models"][name]["applications"]
    assert len(apps) == 1, apps
    status: dict[str, Any] = apps[0]
    return status


def _deployed_options(system: System, name: str) -> dict[str, Any]:
    dashboard = f"http://127.0.0.1:{system.env['SEEDSERVE_DASHBOARD_PORT']}"
    details = httpx.get(f"{dashboard}/api/serve/applications/", headers=ray_auth_headers(), timeout=10).json()
    # As Serve reports the options it runs the replicas with (the reconciler deploys models imperatively).
    options: dict[str, Any] = details["applications"][f"model-{name}"]["deployments"]["ModelServer"][
        "deployment_config"]["ray_actor_options"]
    return options


def test_a_gpu_model_reserves_its_fraction_on_the_gpu_node_and_others_say_why_they_do_not_run(
    system: System, tmp_path: Path, registered: list[str]
) -> None:
    artifact = save_torchscript(make_mlp(seed=7), tmp_path / "m.pt")
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        # The stand-in for a GPU this machine lacks, on the nvidia-l4 node only;
        # the nvidia-t4 node has none: torch sees no CUDA there. One after the
        # other: two raylets starting at once on 2 cores can time out.
        nodes.append(_join(system, tmp_path, "nvidia-l4", {**system.env, "SEEDSERVE_GPU_STAND_IN": "cpu"}))
        _wait_up(tmp_path, "nvidia-l4")
        no_stand_in = {k: v for k, v in system.env.items() if k != "SEEDSERVE_GPU_STAND_IN"}
        nodes.append(_join(system, tmp_path, "nvidia-t4", no_stand_in))
        _wait_up(tmp_path, "nvidia-t4")
        gpu_node = eventually(lambda: _node_of(system, "nvidia-l4"), timeout_s=30, interval_s=1)
        keys = {}
        with ManagerClient(system.manager_url, system.admin_token) as manager:
            for name, scaling in (("on-l4", {"worker_type": "nvidia-l4", "gpus": 0.5}),
                                  ("on-h200", {"worker_type": "nvidia-h200"}),
                                  ("on-t4", {"worker_type": "nvidia-t4"})):
                registered.append(name)
                keys[name] = manager.register(artifact, {**MLP_MANIFEST, "name": name, "precision": "bf16",
                                                         "scaling": {**scaling, "min_replicas": 1, "max_replicas": 1}})

        with Client(system.master_url, keys["on-l4"], timeout=30) as client:
            answer = eventually(lambda: client.predict("on-l4", x=[[0.5] * 16]), timeout_s=120)
        assert len(answer["y"][0]) == 4
        replicas = system.replicas("model-on-l4")
        head = system.replicas("master", "Master")[0]["node_id"]
        assert len(replicas) == 1 and replicas[0]["node_id"].startswith(gpu_node) and replicas[0]["node_id"] != head
        options = _deployed_options(system, "on-l4")
        assert options["num_gpus"] == 0.5 and options["accelerator_type"] == "L4", options
        assert options["resources"] == {"worker:nvidia-l4": 0.001}

        def pending() -> dict[str, Any]:
            status = _model_status(system, "on-h200")
            assert status["status"] == "PENDING", status
            return status

        status = eventually(pending, timeout_s=60, interval_s=1)
        assert status["reason"].startswith("no node offers nvidia-h200"), status
        assert status["replicas"] == 0  # and never a replica on a CPU instead
        shown = subprocess.run([str(VENV_BIN / "seedserve"), "status"], env=system.env, capture_output=True,
                               text=True, timeout=60)
        assert "model on-h200 v1: PENDING (0 replica(s))  no node offers nvidia-h200" in shown.stdout, shown.stdout

        def says_no_cuda() -> None:
            status = _model_status(system, "on-t4")
            assert (status["status"] != "RUNNING"
                    and "CUDA is not available on this node" in status.get("reason", "")), status

        eventually(says_no_cuda, timeout_s=120, interval_s=1)
        with httpx.Client(timeout=10) as http:
            mine = http.get(f"{system.manager_url}/api/cluster",
                            headers={"Authorization": f"Bearer {system.admin_token}"}).json()["models"]
        assert mine["on-h200"]["status"] == "PENDING" and "no node offers nvidia-h200" in mine["on-h200"]["reason"]
        assert "CUDA is not available on this node" in mine["on-t4"]["reason"]
        # Failing models are failed on their own: the master stays healthy.
        health = httpx.get(f"{system.master_url}/healthz", timeout=10).json()
        assert health["status"] == "ok" and health["components"]["reconciler"]["error"] is None, health
    finally:
        # The models go first: replicas on a node that leaves would be rescheduled nowhere.
        with ManagerClient(system.manager_url, system.admin_token) as manager:
            for name in list(registered):
                with contextlib.suppress(NotFound):  # it failed before registering it
                    manager.delete_model(name)
                registered.remove(name)
        for node in nodes:
            node.send_signal(signal.SIGTERM)
            node.wait(90)


def _assert_in(text: str, part: str) -> None:
    assert part in text, text[-1000:]
