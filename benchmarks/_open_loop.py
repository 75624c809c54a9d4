"""An open-loop load generator: requests at a fixed rate, whatever the answers.

wrk keeps a fixed number of connections busy: a slow answer delays the next
request on its connection, so the server sets the rate and the latency of the
requests not sent is never seen (coordinated omission). Here the schedule is
fixed in advance: Poisson arrivals (exponential gaps, seeded) at ``rate`` for
``seconds``, as independent clients send them. Each request goes out at its
scheduled time on an idle keep-alive connection (a new one is opened when all
are busy, up to ``max_connections``; past that it waits for one, and that wait
counts), and its latency counts from its **scheduled** time to the last byte
of its answer. How late the generator itself sent (actual minus scheduled
send time) is reported beside it: a generator that cannot keep up shows
there, not as a lower rate of a latency that looks fine.

Lean on purpose (it shares the CPUs with the server): HTTP/1.1 over asyncio
protocols on uvloop when installed, each request's bytes encoded once, an
answer parsed only as far as its status and Content-Length.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["OpenLoopResult", "request_bytes", "run_open_loop"]


@dataclass(frozen=True)
class OpenLoopResult:
    rate: float
    seconds: float
    sent: int
    answered: int
    #: Non-200 answers, broken connections, and requests unanswered ``grace_s`` after the last was due.
    errors: int
    #: Answers per second over the schedule's span.
    achieved_rps: float
    #: From each request's scheduled send time to its answer's last byte (200 answers only).
    p50_ms: float
    p99_ms: float
    mean_ms: float
    #: Actual minus scheduled send time.
    late_p50_ms: float
    late_p99_ms: float
    late_max_ms: float
    connections: int
    #: CPU seconds the generator's process used per wall second of the run.
    cpu_share: float
    #: Answers by HTTP status ("broken": connection lost mid-request; "unanswered": none within the grace).
    statuses: dict[str, int] = field(default_factory=dict)
    #: Every 200 answer's latency in ms, ascending (left out of :meth:`as_dict`).
    latencies_ms: tuple[float, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "latencies_ms"}


def request_bytes(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One POST of ``body`` to ``url`` as HTTP/1.1 bytes (keep-alive)."""
    parts = urlsplit(url)
    lines = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time."""

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._buffer = bytearray()
        self._need = -1  # bytes of the whole answer, once its head is read
        self._status = 0
        self.transport: asyncio.Transport | None = None
        self.index = -1  # the request in flight

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, index: int, data: bytes) -> None:
        self.index = index
        assert self.transport is not None
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._need < 0:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).lower()
            self._status = int(head[9:12])
            at = head.find(b"content-length:")
            if at < 0:  # not what seedserve answers (it always sends a length): count it as an error
                self._status = -1
                self._need = end + 4
            else:
                self._need = end + 4 + int(head[at + 15:head.find(b"\r\n", at)])
        if len(self._buffer) >= self._need:
            del self._buffer[:self._need]
            self._need, index, self.index = -1, self.index, -1
            self._pool.answered(self, index, self._status)

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool.lost(self)


class _Pool:
    def __init__(self, host: str, port: int, max_connections: int, n: int) -> None:
        self.host, self.port, self.max_connections = host, port, max_connections
        self.idle: list[_Connection] = []
        self.opening = 0
        self.open = 0
        self.waiting: deque[int] = deque()  # due requests with no idle connection
        self.data: bytes = b""
        self.sent_at = [0.0] * n
        self.done_at = [0.0] * n
        self.ok = [False] * n
        self.errors = 0
        self.statuses: Counter[str] = Counter()
        self.finished = 0
        self.clock = time.perf_counter

    async def connect(self) -> None:
        self.opening += 1
        try:
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_connection(lambda: _Connection(self), self.host, self.port)
            self.open += 1
        finally:
            self.opening -= 1
        self.release(protocol)

    def due(self, index: int) -> None:
        if self.idle:
            self._send(self.idle.pop(), index)
            return
        self.waiting.append(index)
        if self.open + self.opening < self.max_connections:
            asyncio.get_running_loop().create_task(self.connect())

    def _send(self, connection: _Connection, index: int) -> None:
        self.sent_at[index] = self.clock()
        connection.send(index, self.data)

    def release(self, connection: _Connection) -> None:
        if self.waiting:
            self._send(connection, self.waiting.popleft())
        else:
            self.idle.append(connection)

    def answered(self, connection: _Connection, index: int, status: int) -> None:
        self.done_at[index] = self.clock()
        self.finished += 1
        self.statuses[str(status)] += 1
        ok = self.ok[index] = status == 200
        if not ok:
            self.errors += 1
        self.release(connection)

    def lost(self, connection: _Connection) -> None:
        self.open -= 1
        if connection in self.idle:
            self.idle.remove(connection)
        if connection.index >= 0:  # broken mid-request
            self.errors += 1
            self.finished += 1
            self.statuses["broken"] += 1
            self.done_at[connection.index] = -1.0


def schedule(rate: float, seconds: float, seed: int = 0) -> list[float]:
    """Poisson send times (seconds from the start) at ``rate`` per second for ``seconds``."""
    rng, t, times = random.Random(seed), 0.0, list[float]()
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            return times
        times.append(t)


async def _run(url: str, data: bytes, rate: float, seconds: float, *, seed: int, connections: int,
               max_connections: int, grace_s: float) -> OpenLoopResult:
    parts = urlsplit(url)
    times = schedule(rate, seconds, seed)
    n = len(times)
    pool = _Pool(parts.hostname or "127.0.0.1", parts.port or 80, max_connections, n)
    pool.data = data
    await asyncio.gather(*(pool.connect() for _ in range(connections)))
    clock = pool.clock
    cpu0 = time.process_time()
    start = clock() + 0.01
    scheduled = [start + t for t in times]
    i = 0
    while i < n:
        now = clock()
        while i < n and scheduled[i] <= now:
            pool.due(i)
            i += 1
        if i < n:
            wait = scheduled[i] - clock()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                await asyncio.sleep(0)  # let answers in between bursts
    deadline = clock() + grace_s
    while clock() < deadline and pool.finished < n:
        await asyncio.sleep(0.01)
    wall = clock() - start
    cpu = time.process_time() - cpu0
    opened = pool.open + pool.opening
    latencies = sorted((pool.done_at[k] - scheduled[k]) * 1e3 for k in range(n) if pool.ok[k])
    lateness = sorted((pool.sent_at[k] - scheduled[k]) * 1e3 for k in range(n) if pool.sent_at[k] > 0)
    unanswered = sum(1 for d in pool.done_at if d == 0.0)
    for connection in list(pool.idle):
        if connection.transport is not None:
            connection.transport.close()
    span = max(times[-1], 1e-9) if times else seconds
    return OpenLoopResult(
        rate=rate, seconds=seconds, sent=sum(1 for s in pool.sent_at if s > 0), answered=len(latencies),
        errors=pool.errors + unanswered, achieved_rps=len(latencies) / span,
        p50_ms=_q(latencies, 0.5), p99_ms=_q(latencies, 0.99),
        mean_ms=statistics.fmean(latencies) if latencies else float("nan"),
        late_p50_ms=_q(lateness, 0.5), late_p99_ms=_q(lateness, 0.99), late_max_ms=lateness[-1] if lateness else 0.0,
        connections=opened, cpu_share=cpu / max(wall, 1e-9),
        statuses=dict(pool.statuses, **({"unanswered": unanswered} if unanswered else {})),
        latencies_ms=tuple(latencies))


def _q(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def run_open_loop(url: str, body: bytes, headers: dict[str, str], *, rate: float, seconds: float, seed: int = 0,
                  connections: int = 16, max_connections: int = 512, grace_s: float = 5.0) -> OpenLoopResult:
    """POST ``body`` to ``url`` (plain HTTP on loopback) at Poisson times of ``rate`` per second for ``seconds``."""
    data = request_bytes(url, body, headers)
    try:
        import uvloop
    except ImportError:  # plain asyncio: slower, still open loop
        return asyncio.run(_run(url, data, rate, seconds, seed=seed, connections=connections,
                                max_connections=max_connections, grace_s=grace_s))
    return uvloop.run(_run(url, data, rate, seconds, seed=seed, connections=connections,
                           max_connections=max_connections, grace_s=grace_s))
