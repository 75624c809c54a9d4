"""A cgroup per sandbox: memory, processes and CPU share, v2 or v1.

A cgroup bounds the whole sandbox, its children and its tmpfs included,
and does not break CUDA the way an address-space limit does. The kernel
OOM-kills a sandbox over its memory; :meth:`Cgroup.hit_memory_limit`
tells that death from others.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Cgroup", "CgroupLimits", "cgroup_support"]

_ROOT = Path("/sys/fs/cgroup")
_NAME = "seedserve-sandbox"
_CFS_PERIOD_US = 100_000


@dataclass(frozen=True)
class CgroupLimits:
    memory_bytes: int
    pids: int
    cpus: float | None = None


def cgroup_support(root: Path = _ROOT) -> str | None:
    """``"v2"``, ``"v1"``, or ``None`` when this process cannot make cgroups."""
    if (root / "cgroup.controllers").exists():
        controllers = (root / "cgroup.controllers").read_text().split()
        return "v2" if {"memory", "pids"} <= set(controllers) and os.access(root, os.W_OK) else None
    if all(os.access(root / c, os.W_OK) for c in ("memory", "pids")):
        return "v1"
    return None


class Cgroup:
    """One sandbox's cgroup(s); :meth:`remove` kills what is left and deletes them."""

    def __init__(self, limits: CgroupLimits, root: Path = _ROOT) -> None:
        self.version = cgroup_support(root)
        if self.version is None:
            raise OSError(f"cannot create cgroups under {root}")
        self.limits = limits
        leaf = secrets.token_hex(6)
        if self.version == "v2":
            parent = root / _NAME
            parent.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):  # already enabled, or enabled above us
                (root / "cgroup.subtree_control").write_text("+memory +pids +cpu")
                (parent / "cgroup.subtree_control").write_text("+memory +pids +cpu")
            self.dirs = [parent / leaf]
        else:
            controllers = ["memory", "pids"] + (["cpu"] if limits.cpus and os.access(root / "cpu", os.W_OK) else [])
            self.dirs = [root / c / _NAME / leaf for c in controllers]
        for path in self.dirs:
            path.mkdir(parents=True)
        self._write_limits()

    def _write_limits(self) -> None:
        limits = self.limits
        for path in self.dirs:
            settings: dict[str, str] = {}
            if self.version == "v2":
                settings = {"memory.max": str(limits.memory_bytes), "memory.swap.max": "0",
                            "pids.max": str(limits.pids)}
                if limits.cpus:
                    settings["cpu.max"] = f"{int(limits.cpus * _CFS_PERIOD_US)} {_CFS_PERIOD_US}"
            elif path.parts[-3] == "memory":
                settings = {"memory.limit_in_bytes": str(limits.memory_bytes),
                            "memory.memsw.limit_in_bytes": str(limits.memory_bytes)}
            elif path.parts[-3] == "pids":
                settings = {"pids.max": str(limits.pids)}
            elif path.parts[-3] == "cpu" and limits.cpus:
                settings = {"cpu.cfs_period_us": str(_CFS_PERIOD_US),
                            "cpu.cfs_quota_us": str(int(limits.cpus * _CFS_PERIOD_US))}
            for name, value in settings.items():
                target = path / name
                if target.exists():  # memsw and swap files exist only with swap accounting
                    target.write_text(value)

    @property
    def procs_files(self) -> list[str]:
        return [str(path / "cgroup.procs") for path in self.dirs]

    def hit_memory_limit(self) -> bool:
        """Whether the kernel refused the sandbox memory at its limit."""
        for path in self.dirs:
            if self.version == "v2":
                events = dict(line.split() for line in (path / "memory.events").read_text().splitlines())
                return int(events.get("max", 0)) > 0 or int(events.get("oom_kill", 0)) > 0
            if path.parts[-3] == "memory":
                # failcnt stays 0 on some kernels that OOM-kill; oom_control counts the kills.
                control = dict(line.split() for line in (path / "memory.oom_control").read_text().splitlines())
                peak, limit = ((path / f).read_text() for f in ("memory.max_usage_in_bytes", "memory.limit_in_bytes"))
                return int(control.get("oom_kill", 0)) > 0 or int(peak) >= int(limit)
        return False

    def remove(self) -> None:
        """Kill every process still in the cgroup, then delete it."""
        for path in self.dirs:
            for _ in range(50):
                with contextlib.suppress(OSError):
                    pids = [int(pid) for pid in (path / "cgroup.procs").read_text().split()]
                    if not pids:
                        break
                    for pid in pids:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                time.sleep(0.02)  # a killed process leaves its cgroup when it has exited
            with contextlib.suppress(OSError):
                path.rmdir()
