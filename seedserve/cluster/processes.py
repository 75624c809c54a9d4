"""Child processes that ``seedserve up`` and ``seedserve worker join`` supervise."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

__all__ = ["Child", "environ_with", "session_members", "start_child", "supervise", "wait_until"]


@dataclass
class Child:
    """A named child process with its log file; ``restart`` (if set) starts
    a replacement when the supervisor finds it dead."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    restart: Callable[[], Child] | None = field(default=None, repr=False)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; then kill whatever the child
        left behind in its session (Ray's workers outlive a killed ``ray start``)."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for pid in session_members(self.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def session_members(sid: int) -> list[int]:
    """Processes in session ``sid`` (children are started as session leaders)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command name: state, ppid, pgrp, session, ...
        if int(fields[3]) == sid and int(stat.parent.name) != sid:
            members.append(int(stat.parent.name))
    return members


def start_child(name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> Child:
    """Start ``argv`` with output to ``log``, in its own process group so a
    Ctrl-C in the terminal reaches only ``seedserve up``, which stops children in order."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    return Child(name, process, log)


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, child: Child | None = None,
               interval_s: float = 0.1) -> None:
    """Poll ``check`` every ``interval_s`` until it holds; raise with ``what``
    (and the child's log) if it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise RuntimeError(f"{what}: {child.name} exited with code {child.process.returncode}\n{child.log_tail()}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(interval_s)
    tail = f"\n{child.log_tail()}" if child is not None else ""
    raise RuntimeError(f"{what}: not ready after {timeout_s:.0f} s{tail}")


def environ_with(extra: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env



#: A child that has to be restarted this often within RESTART_WINDOW_S is
#: crash-looping: the supervisor gives up and stops the system.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 300.0


def supervise(start: Callable[[list[Child]], None], echo: Callable[[str], None]) -> None:
    """Run ``start`` (which appends the children it starts), then block until
    SIGINT or SIGTERM; stop every child in reverse order whatever happens.
    A child that dies is restarted if it can be (``Child.restart``), up to
    MAX_RESTARTS times in RESTART_WINDOW_S; any other death stops the system."""
    children: list[Child] = []
    restarts: dict[str, deque[float]] = {}
    # SIGTERM stops the system the way Ctrl-C does; the first signal wins.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        start(children)
        while True:
            for i, child in enumerate(children):
                if not child.alive():
                    children[i] = _restarted(child, restarts.setdefault(child.name, deque()), echo)
            time.sleep(0.5)
    except KeyboardInterrupt:
        echo("stopping")
    finally:
        _ignore_signals()
        for child in reversed(children):
            child.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _restarted(child: Child, history: deque[float], echo: Callable[[str], None]) -> Child:
    now = time.monotonic()
    while history and now - history[0] > RESTART_WINDOW_S:
        history.popleft()
    if child.restart is None or len(history) >= MAX_RESTARTS:
        why = "" if child.restart is None else f" ({len(history)} restarts in {RESTART_WINDOW_S:.0f} s)"
        raise RuntimeError(f"{child.name} exited unexpectedly{why}:\n{child.log_tail()}")
    history.append(now)
    echo(f"{child.name} exited with code {child.process.returncode}; restarting it")
    child.stop()  # whatever it left behind in its session
    replacement = child.restart()
    replacement.restart = child.restart
    echo(f"{child.name} is back")
    return replacement


def _ignore_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _ignore_signals()  # a second Ctrl-C must not cut the orderly stop short
    raise KeyboardInterrupt
