"""CPU seconds a server spends, read from /proc: user + system time of every
process of its tree (the root, its descendants, and every process in a
session one of them leads: Ray's workers, HAProxy, Triton's stubs).

A sample maps each process, named by pid and start time (so a reused pid is
a new process), to its CPU seconds so far; what a run cost is the sum of
the differences between two samples. A process that started during the run
counts whole; one that ended during it counts until the first sample only
(the servers measured here keep their processes for the whole run).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["Sample", "cpu_between", "ms_per_request", "sample_tree"]

#: (pid, start time in clock ticks) -> CPU seconds (user + system) so far.
Sample = dict[tuple[int, int], float]

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: state, ppid, pgrp, session, ...; None once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _members(root: int) -> set[int]:
    """``root``, its descendants and the members of any session they lead, to a fixed point."""
    parent: dict[int, int] = {}
    session: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            parent[int(entry.name)], session[int(entry.name)] = int(fields[1]), int(fields[3])
    members = {root}
    while True:
        grown = members | {pid for pid in parent if parent[pid] in members or session[pid] in members}
        if grown == members:
            return members
        members = grown


def sample_tree(root: int) -> Sample:
    """CPU seconds so far of every process of ``root``'s tree (see the module docstring)."""
    sample: Sample = {}
    for pid in _members(root):
        fields = _stat_fields(pid)
        if fields is not None:  # utime, stime and starttime are fields 14, 15 and 22 of stat
            sample[(pid, int(fields[19]))] = (int(fields[11]) + int(fields[12])) * _TICK_S
    return sample


def cpu_between(before: Mapping[tuple[int, int], float], after: Mapping[tuple[int, int], float]) -> float:
    """CPU seconds spent between two samples: a process new in ``after`` counts whole."""
    return sum(seconds - before.get(process, 0.0) for process, seconds in after.items())


def ms_per_request(cpu_s: float, requests: int) -> float | None:
    """CPU milliseconds per answered request; None when nothing was answered."""
    return cpu_s * 1000 / requests if requests > 0 else None
