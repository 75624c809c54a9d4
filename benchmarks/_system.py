"""The real `seedserve up` for benchmarks, on its own ports and data directory,
and the memory of everything it started."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from seedserve.cluster.processes import start_child, wait_until

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Running:
    master_url: str
    manager_url: str
    dashboard_url: str
    token: str
    data_dir: Path
    pid: int
    #: ``host:port`` of the KServe v2 gRPC inference service
    grpc_target: str = ""


@contextmanager
def seedserve_up(logs: Path, port_base: int, env: dict[str, str] | None = None) -> Iterator[Running]:
    """``seedserve up`` until the block exits; ``port_base`` keeps Ray's
    internal ports apart from any other cluster on this machine."""
    data = Path(tempfile.mkdtemp(prefix="seedserve-bench-"))
    ports = {name: free_port() for name in ("MASTER", "MANAGER", "DB", "RAY", "DASHBOARD", "GRPC")}
    child_env = {**os.environ, **{f"SEEDSERVE_{k}_PORT": str(v) for k, v in ports.items()},
                 "SEEDSERVE_DATA_DIR": str(data), "SEEDSERVE_INTERNAL_PORT_BASE": str(port_base), **(env or {})}
    # A log of its own: a second system in the same run must not read the first's "is up".
    child = start_child("seedserve", [str(BIN / "seedserve"), "up"], logs / f"{data.name}.log", env=child_env)
    try:
        wait_until(lambda: "seedserve is up" in child.log.read_text(), 300, "seedserve up", child)
        yield Running(f"http://127.0.0.1:{ports['MASTER']}", f"http://127.0.0.1:{ports['MANAGER']}",
                      f"http://127.0.0.1:{ports['DASHBOARD']}", (data / "admin-token").read_text().strip(), data,
                      child.process.pid, f"127.0.0.1:{ports['GRPC']}")
    finally:
        child.stop(60)


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    pids, stack = [], [root]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        stack += children.get(pid, [])
    return pids


def tree_pss_bytes(root: int) -> int:
    """Proportional set size of ``root`` and all its descendants: shared pages
    (torch's libraries in every replica) count once in total, not once per process."""
    total = 0
    for pid in tree_pids(root):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total
