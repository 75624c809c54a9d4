"""Per-model metrics, Prometheus style, exported only by the master's
authenticated ``GET /metrics``.

Each model replica keeps running totals (:class:`ModelMetrics`: answers by
status, errors by kind, latency and batch-size histograms, its admission
queue) and sends them to the master over Ray every second while they change
(every few seconds otherwise). The master keeps each replica's latest totals
(:class:`MetricsBook`) and exports one series per model version, summed over
its replicas, with the labels ``model`` and ``version`` only (plus ``code``
and ``error``), through prometheus-client's exposition. Nothing goes through
Ray's metrics API: Ray's agent would export it unauthenticated on every
node's metrics port, prefixed ``ray_`` and labelled with Ray's internals
(worker, session, replica ids).

Totals, not increments, travel: a lost report is made good by the next, and
a restarted master learns every live replica's totals again. A replica's
totals stay counted after it stops, so the summed counters never go down
while the master runs.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "PathCost",
    "BATCH_BUCKETS",
    "CONTENT_TYPE",
    "DURATION_BUCKETS_S",
    "METRIC_NAMES",
    "CallLog",
    "Histogram",
    "MetricsBook",
    "ModelMetrics",
    "ReplicaTotals",
    "exposition",
]

logger = logging.getLogger("seedserve.metrics")

#: Upper bounds of the request duration histogram (seconds).
DURATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Upper bounds of the batch size histogram (items per model call).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

#: Every family /metrics exports (the names a scraper sees; histograms add _bucket, _sum, _count).
METRIC_NAMES = {
    "seedserve_requests_total": "Queries a model version answered, by HTTP status code.",
    "seedserve_errors_total": "Queries answered with an error, by HTTP status code and seedserve error code.",
    "seedserve_request_duration_seconds": "Time a query spends in the model's replica, from arrival to answer.",
    "seedserve_batch_size": "Items per model call (queries run together share one call).",
    "seedserve_queue_depth": "Queries waiting for an admission slot, summed over the version's replicas.",
    "seedserve_replicas": "Running replicas of a model version (from Serve).",
    "seedserve_master_requests_total": "Requests the master's own application answered, by route "
                                       "(a model's queries reach it only when the model has no application).",
}

#: Prometheus' text format, version 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LABELS = ["model", "version"]


@dataclasses.dataclass
class Histogram:
    """Counts per bucket (not cumulative; the last is past the largest bound) and the sum."""

    bounds: tuple[float, ...]
    counts: list[int] = dataclasses.field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        # Prometheus' buckets are "less than or equal": bisect_left finds the first bound >= value.
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def add(self, other: Histogram) -> None:
        for i, count in enumerate(other.counts):
            self.counts[i] += count
        self.total += other.total

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, cumulative count)`` pairs, ``+Inf`` last, as prometheus-client takes them."""
        running, buckets = 0, []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            running += count
            buckets.append((bound, float(running)))
        return buckets


@dataclasses.dataclass
class ReplicaTotals:
    """What one replica has answered since it started (sent to the master as is)."""

    requests: dict[str, int] = dataclasses.field(default_factory=dict)  # status code -> queries
    errors: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)  # (code, error) -> queries
    duration: Histogram = dataclasses.field(default_factory=lambda: Histogram(DURATION_BUCKETS_S))
    batch: Histogram = dataclasses.field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    queue: int = 0


class ModelMetrics:
    """What one model replica records. Plain counters, a few hundred
    nanoseconds a query; :meth:`report_forever` sends copies to the master."""

    def __init__(self) -> None:
        self._totals = ReplicaTotals()
        self._requests: collections.Counter[int] = collections.Counter()
        self._errors: collections.Counter[tuple[int, str]] = collections.Counter()
        self._changed = False

    def answered(self, status: int, seconds: float, error: str | None = None) -> None:
        """One query answered with ``status`` after ``seconds``; ``error``: its seedserve error code."""
        self._requests[status] += 1
        if error is not None or status >= 400:
            self._errors[status, error or "http_error"] += 1
        self._totals.duration.observe(seconds)
        self._changed = True

    def batch(self, size: int) -> None:
        self._totals.batch.observe(size)
        self._changed = True

    def queue(self, waiting: int) -> None:
        if waiting != self._totals.queue:
            self._totals.queue = waiting
            self._changed = True

    def totals(self) -> ReplicaTotals:
        """A copy of the totals so far."""
        self._changed = False
        return dataclasses.replace(
            self._totals,
            requests={str(code): n for code, n in self._requests.items()},
            errors={(str(code), error): n for (code, error), n in self._errors.items()},
            duration=dataclasses.replace(self._totals.duration, counts=list(self._totals.duration.counts)),
            batch=dataclasses.replace(self._totals.batch, counts=list(self._totals.batch.counts)),
        )

    async def report_forever(self, send: Callable[[ReplicaTotals], Awaitable[None]], interval_s: float = 1.0,
                             heartbeat_s: float = 5.0) -> None:
        """``send(totals)`` every ``interval_s`` while they change, and every
        ``heartbeat_s`` regardless (the master counts the queue of replicas
        it has heard from lately only)."""
        last = 0.0
        while True:
            await asyncio.sleep(interval_s)
            if not self._changed and time.monotonic() - last < heartbeat_s:
                continue
            try:
                await send(self.totals())
                last = time.monotonic()
            except Exception:  # the master is restarting: the next report carries the same totals and more
                self._changed = True
                logger.warning("could not report metrics to the master; retrying", exc_info=True)


@dataclasses.dataclass
class _Heard:
    totals: ReplicaTotals
    at: float


class MetricsBook:
    """The master's view: each replica's latest totals, summed per model version.

    ``clock`` is injected (monotonic seconds) for the queue's staleness rule: a
    replica not heard from for ``stale_s`` (stopped, or its node lost) adds
    nothing to the queue depth; its counts stay in the totals."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, stale_s: float = 20.0) -> None:
        self._clock = clock
        self._stale_s = stale_s
        self._replicas: dict[tuple[str, int], dict[str, _Heard]] = {}

    def record(self, model: str, version: int, replica: str, totals: ReplicaTotals) -> None:
        self._replicas.setdefault((model, version), {})[replica] = _Heard(totals, self._clock())

    def models(self) -> set[str]:
        return {model for model, _ in self._replicas}

    def forget(self, model: str) -> None:
        """Drop a deleted model's series."""
        for key in [key for key in self._replicas if key[0] == model]:
            del self._replicas[key]

    def versions(self) -> Iterator[tuple[tuple[str, int], ReplicaTotals]]:
        """Per model version, its replicas' totals summed (queue: of those heard from lately)."""
        now = self._clock()
        for key, heard in sorted(self._replicas.items()):
            summed = ReplicaTotals()
            requests: collections.Counter[str] = collections.Counter()
            errors: collections.Counter[tuple[str, str]] = collections.Counter()
            for entry in heard.values():
                requests.update(entry.totals.requests)
                errors.update(entry.totals.errors)
                summed.duration.add(entry.totals.duration)
                summed.batch.add(entry.totals.batch)
                if now - entry.at <= self._stale_s:
                    summed.queue += entry.totals.queue
            summed.requests, summed.errors = dict(requests), dict(errors)
            yield key, summed


class _Collector(Collector):
    """prometheus-client's view of a :class:`MetricsBook` and the replica counts."""

    def __init__(self, book: MetricsBook, replicas: Mapping[tuple[str, int], int],
                 master_requests: Mapping[str, int]) -> None:
        self._book = book
        self._replicas = replicas
        self._master_requests = master_requests

    def collect(self) -> Iterable[Metric]:
        doc = METRIC_NAMES
        requests = CounterMetricFamily("seedserve_requests", doc["seedserve_requests_total"], labels=[*_LABELS, "code"])
        errors = CounterMetricFamily("seedserve_errors", doc["seedserve_errors_total"],
                                     labels=[*_LABELS, "code", "error"])
        duration = HistogramMetricFamily("seedserve_request_duration_seconds",
                                         doc["seedserve_request_duration_seconds"],
                                         labels=_LABELS, unit="seconds")
        batch = HistogramMetricFamily("seedserve_batch_size", doc["seedserve_batch_size"], labels=_LABELS)
        queue = GaugeMetricFamily("seedserve_queue_depth", doc["seedserve_queue_depth"], labels=_LABELS)
        replicas = GaugeMetricFamily("seedserve_replicas", doc["seedserve_replicas"], labels=_LABELS)
        for (model, version), totals in self._book.versions():
            labels = [model, str(version)]
            for code, count in sorted(totals.requests.items()):
                requests.add_metric([*labels, code], count)
            for (code, error), count in sorted(totals.errors.items()):
                errors.add_metric([*labels, code, error], count)
            duration.add_metric(labels, totals.duration.cumulative(), totals.duration.total)
            batch.add_metric(labels, totals.batch.cumulative(), totals.batch.total)
            queue.add_metric(labels, totals.queue)
        for (model, version), count in sorted(self._replicas.items()):
            replicas.add_metric([model, str(version)], count)
        master = CounterMetricFamily("seedserve_master_requests", doc["seedserve_master_requests_total"],
                                     labels=["route"])
        for route, count in sorted(self._master_requests.items()):
            master.add_metric([route], count)
        return [requests, errors, duration, batch, queue, replicas, master]


def exposition(book: MetricsBook, replicas: Mapping[tuple[str, int], int],
               master_requests: Mapping[str, int] | None = None) -> bytes:
    """The Prometheus text of ``book``, ``replicas`` ((model, version) ->
    running replicas) and ``master_requests`` (route -> requests the master answered)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(book, replicas, master_requests or {}))
    return generate_latest(registry)


class CallLog:
    """The replica's recent model calls (seconds, items), reported to the
    registry as measured latency beside the profiler's prediction."""

    def __init__(self, size: int = 2048) -> None:
        self._recent: collections.deque[tuple[float, int]] = collections.deque(maxlen=size)
        self.calls = 0
        self._reported = 0

    def add(self, seconds: float, items: int) -> None:
        self._recent.append((seconds, items))
        self.calls += 1

    def stats(self) -> dict[str, float] | None:
        """p50 and p99 of recent calls (ms) and their mean items, or None if
        nothing ran since the last report."""
        if self.calls == self._reported or not self._recent:
            return None
        self._reported = self.calls
        ordered = sorted(seconds for seconds, _ in self._recent)
        return {
            "p50_ms": ordered[len(ordered) // 2] * 1e3,
            "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3,
            "mean_items": sum(n for _, n in self._recent) / len(self._recent),
            "calls": float(self.calls),
        }


class PathCost:
    """The replica's CPU per query outside its model calls: HTTP, key check,
    admission, decode, encode, metrics, the path that
    seedserve.profiler.queueing.QueryPath.path_s prices. Over each report's
    window: the process's CPU time less the model calls' time, over the
    queries answered. Only on one torch thread, where a call's time is its
    CPU, and only over at least ``min_queries``, so that the replica's
    background work (key refresh, reports) is a small share of it."""

    def __init__(self, min_queries: int = 200, cpu: Callable[[], float] = time.process_time) -> None:
        self._min, self._cpu = min_queries, cpu
        self._since, self._queries, self._model_s = cpu(), 0, 0.0
        self._lock = threading.Lock()  # calls end on the model's thread; the window is taken on the event loop

    def query(self) -> None:
        self._queries += 1

    def call(self, seconds: float) -> None:
        with self._lock:
            self._model_s += seconds

    def take(self, threads: int) -> float | None:
        """Seconds of path per query since the last value taken, or None:
        too few queries yet (they keep counting), or calls on several threads."""
        if self._queries < self._min:
            return None
        with self._lock:
            now = self._cpu()
            spent, queries, model_s = now - self._since, self._queries, self._model_s
            self._since, self._queries, self._model_s = now, 0, 0.0
        return max(0.0, (spent - model_s) / queries) if threads == 1 else None
