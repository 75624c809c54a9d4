"""Counting failures (wrong passwords, wrong keys) per scope in a sliding
window, and refusing with 429 past a limit. In memory, per process: the
manager keeps one for sign-ins, each model replica one for its keys."""

from __future__ import annotations

import collections
import time

from seedserve.errors import RateLimited

#: Wrong keys one replica answers with 401 per minute; past it, 429. The
#: replica cannot limit per client: Ray's HAProxy does not pass the client's
#: address on. (Settings.wrong_keys_per_minute; only benchmarks raise it.)
WRONG_KEYS_PER_MINUTE = 100

__all__ = ["FailureLimiter"]

#: Past this many tracked keys the table starts over: memory stays bounded
#: under a spray of usernames or addresses.
MAX_TRACKED = 100_000


class FailureLimiter:
    """At most ``limits[scope]`` failures per key of that scope in a sliding
    ``window_s`` (a client address may fail more often than one username);
    past it, :meth:`check` raises 429 saying what failed too often and when
    to retry."""

    def __init__(self, limits: dict[str, int], window_s: float = 60.0, *, what: str = "failures") -> None:
        self._limits = limits
        self._window_s = window_s
        self._what = what
        self._failures: dict[tuple[str, str], collections.deque[float]] = {}

    def check(self, **keys: str) -> None:
        """``keys``: scope -> key, e.g. ``ip="10.0.0.1", user="ada"``."""
        now = time.monotonic()
        for scope, key in keys.items():
            failures = self._failures.get((scope, key))
            if not failures:
                continue
            while failures and failures[0] <= now - self._window_s:
                failures.popleft()
            if len(failures) >= self._limits[scope]:
                retry = int(failures[0] + self._window_s - now) + 1
                raise RateLimited(f"too many {self._what}; retry in {retry} s", retry_after_s=retry)

    def failed(self, **keys: str) -> None:
        now = time.monotonic()
        if len(self._failures) > MAX_TRACKED:
            self._failures.clear()
        for scope, key in keys.items():
            self._failures.setdefault((scope, key), collections.deque()).append(now)
