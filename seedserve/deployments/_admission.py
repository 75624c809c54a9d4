"""Per-replica admission: at most ``capacity`` queries run at once and at most
``max_queued`` wait; one more is refused at once with 503 and a
``Retry-After`` estimated from recent latency, so a flood never turns into
requests that hang."""

from __future__ import annotations

import asyncio
import math
import statistics
import threading
import time
from collections import deque

from seedserve.errors import Overloaded

__all__ = ["Admission", "CallTime", "Deadlines"]


class Admission:
    def __init__(self, capacity: int, max_queued: int) -> None:
        self.capacity = capacity
        self.max_queued = max_queued
        self._slots = asyncio.Semaphore(capacity)
        self.waiting = 0
        self.running = 0
        self._latency_s = 0.05  # a moving average of time in a slot

    def slot(self) -> _Slot:
        """``async with admission.slot():`` runs its block in a slot, after
        waiting for one in the queue, or raises :class:`Overloaded` at once
        when the queue is full."""
        return _Slot(self)

    async def _enter(self) -> None:
        if self._slots.locked() and self.waiting >= self.max_queued:
            raise Overloaded(
                f"the model is at capacity ({self.running} queries running, {self.waiting} waiting); "
                "retry after the time in Retry-After, or raise max_replicas / max_queued_requests",
                retry_after_s=self.retry_after_s(),
            )
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1

    def _exit(self, seconds: float) -> None:
        self.running -= 1
        self._slots.release()
        self._latency_s = 0.9 * self._latency_s + 0.1 * seconds

    def retry_after_s(self) -> int:
        """Seconds until the queue ahead has likely drained (at least 1)."""
        return max(1, math.ceil(self._latency_s * (self.waiting + 1) / self.capacity))


class _Slot:
    """One query's hold on an admission slot (a class, not a generator-based
    context manager: it is entered on every query)."""

    __slots__ = ("_admission", "_start")

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._start = 0.0

    async def __aenter__(self) -> None:
        await self._admission._enter()
        self._start = time.monotonic()

    async def __aexit__(self, *exc_info: object) -> None:
        self._admission._exit(time.monotonic() - self._start)


class Deadlines:
    """``async with deadlines.within():`` is ``asyncio.timeout(timeout_s)``
    with one timer for all the queries in flight rather than one each. With a
    single timeout, deadlines fall due in the order the blocks were entered,
    so a queue of them needs no heap: the timer waits for the oldest."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._pending: deque[_Within] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def within(self) -> _Within:
        return _Within(self)

    def _add(self, entry: _Within, loop: asyncio.AbstractEventLoop) -> None:
        pending = self._pending
        while pending and pending[0].task is None:  # blocks already left
            pending.popleft()
        pending.append(entry)
        if self._timer is None:
            self._timer = loop.call_at(pending[0].deadline, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        pending, now = self._pending, loop.time()
        while pending and (pending[0].task is None or pending[0].deadline <= now):
            entry = pending.popleft()
            if entry.task is not None:
                entry.expired = True
                entry.task.cancel()
        if pending:
            self._timer = loop.call_at(pending[0].deadline, self._expire, loop)


class _Within:
    __slots__ = ("_deadlines", "task", "deadline", "expired", "_cancelling")

    def __init__(self, deadlines: Deadlines) -> None:
        self._deadlines = deadlines
        self.task: asyncio.Task[object] | None = None
        self.deadline = 0.0
        self.expired = False
        self._cancelling = 0

    async def __aenter__(self) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("Deadlines.within() is for tasks")
        self.task, self._cancelling = task, task.cancelling()
        self.deadline = loop.time() + self._deadlines.timeout_s
        self._deadlines._add(self, loop)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        task, self.task = self.task, None
        # As asyncio.timeout: our cancellation becomes TimeoutError; anyone
        # else's (the client left, the replica stops) goes on as it was.
        mine = task is not None and task.uncancel() <= self._cancelling
        if self.expired and mine and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc


class CallTime:
    """How long one model call takes: the median of the last ``window`` calls.

    A median, not a moving average, because this machine's scheduler can
    stall any one call for milliseconds; one such outlier must not move a
    0.1 ms model onto the thread pool and into batching, where the thread
    hop would make every later call look slow too."""

    def __init__(self, window: int = 15) -> None:
        self._recent: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.seconds = 0.0

    def add(self, seconds: float) -> None:
        with self._lock:
            self._recent.append(seconds)
            self.seconds = statistics.median(self._recent)
