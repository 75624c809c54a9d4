"""``seedserve worker join``: a Ray worker node that joins a running
seedserve cluster and advertises its worker type, so that models asking for
that type get their replicas on it."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from seedserve.cluster.components import ray_node_environ
from seedserve.cluster.ports import PortPlan, port_is_free
from seedserve.cluster.processes import Child, start_child, supervise, wait_until
from seedserve.deployments.serve_api import ray_auth_headers
from seedserve.deployments.serve_config import worker_resource
from seedserve.profiler.catalog import load_catalog

__all__ = ["node_address", "node_args", "run_worker", "worker_argv"]

_BIN = Path(sys.executable).parent


#: What `ray start` prints once the GCS lists the new node (Ray waits for that).
RAY_STARTED = "Ray runtime started"


def worker_argv(address: str, worker_type: str, plan: PortPlan, num_cpus: int | None,
                num_gpus: float | None = None, accelerator_type: str | None = None) -> list[str]:
    """``ray start`` for a worker node of ``worker_type`` joining the head at
    ``address``. ``num_gpus``: the type's GPUs, offered as Ray GPUs (unset:
    Ray counts them); with them the node also advertises Ray's resource of
    ``accelerator_type``, as Ray does itself where it can probe the GPU."""
    resources = {worker_resource(worker_type): 1000}
    if num_gpus is not None and accelerator_type:
        resources[f"accelerator_type:{accelerator_type}"] = 1
    argv = [
        str(_BIN / "ray"), "start", "--block",
        f"--address={address}",
        f"--resources={json.dumps(resources)}",
        "--disable-usage-stats",
        *plan.ray_start_args(),
    ]
    if num_cpus is not None:
        argv.append(f"--num-cpus={num_cpus}")
    if num_gpus is not None:
        argv.append(f"--num-gpus={num_gpus:g}")
    return argv


def node_address(head: str) -> str:
    """This machine's address on the route to ``head`` (``HOST:PORT``): the
    local end of a UDP socket connected there. Connecting a UDP socket sends
    nothing; it only asks the kernel for the route."""
    host, _, port = head.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((host, int(port)))
            return str(probe.getsockname()[0])
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"no route from this machine to the head at {head!r} ({exc}); check --address, "
                           "or give this machine's address with --advertise") from exc


def node_args(head: str, advertise: str | None, temp_dir: Path | None) -> list[str]:
    """``ray start`` options for where this node is: the address the head and
    other nodes reach it on (given, or the one on the route to the head: Ray
    would otherwise probe towards a public address), and Ray's temporary
    directory on this machine (given, else Ray's default here). Without one,
    a joining node takes the head's path, which on another machine may not
    exist, and on this one is the head's own directory."""
    if temp_dir is None:
        temp_dir = Path(os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp") / "ray"
    return [f"--node-ip-address={advertise or node_address(head)}", f"--temp-dir={temp_dir.resolve()}"]


def run_worker(
    address: str, worker_type: str, *, port_base: int, num_cpus: int | None, log_dir: Path,
    echo: Callable[[str], None], num_gpus: float | None = None, advertise: str | None = None,
    temp_dir: Path | None = None,
) -> None:
    """Run the worker node in the foreground until SIGINT or SIGTERM."""
    accelerator_type = load_catalog().gpu_types().get(worker_type)
    where = node_args(address, advertise, temp_dir)
    plan = PortPlan(port_base)
    if not port_is_free("127.0.0.1", plan.base):
        raise RuntimeError(
            f"port {plan.base} is taken (another node on this machine?); choose another --port-base"
        )
    log_dir.mkdir(parents=True, exist_ok=True)
    env = ray_node_environ(plan.serve_env(), log_dir / "bin")
    # This node's replicas log to a file here (the head's file is on another machine).
    env.setdefault("SEEDSERVE_LOG_FILE", str((log_dir / "seedserve.log").resolve()))
    if ray_auth_headers():
        # A head started by `ray start --head` turns token auth on; a joining
        # node only presents the token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH
        # or ~/.ray/auth_token, copied from the head) in token mode.
        env.setdefault("RAY_AUTH_MODE", "token")

    def start(children: list[Child]) -> None:
        echo(f"joining the Ray cluster at {address} as a {worker_type!r} worker ({where[0].split('=')[1]})")
        child = start_child("ray worker",
                            worker_argv(address, worker_type, plan, num_cpus, num_gpus, accelerator_type) + where,
                            log_dir / f"worker-{worker_type}.out", env=env)
        children.append(child)
        # The raylet listens on its port before the head knows the node; `ray
        # start` says "Ray runtime started" once the head's GCS lists it.
        wait_until(lambda: not port_is_free("127.0.0.1", plan.base)
                   and RAY_STARTED in child.log.read_text(errors="replace"), 120, "Ray worker node", child)
        echo(f"worker {worker_type!r} is up (Ray resource {worker_resource(worker_type)!r}). Press Ctrl-C to stop.")

    supervise(start, echo)
