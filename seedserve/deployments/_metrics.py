"""Per-model metrics: recorded in each model replica with Ray's metrics API
(exported by every node's Ray metrics agent in Prometheus format), and
gathered by the master for ``GET /metrics``."""

from __future__ import annotations

import asyncio
import collections
import re
from collections.abc import Iterable, Mapping

import httpx
from ray.serve import metrics

__all__ = ["CallLog", "ModelMetrics", "gather", "node_metric_urls"]

_LATENCY_BOUNDARIES_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]
_BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256]


class ModelMetrics:
    """What one model replica records: requests and errors by status,
    latency, batch sizes and the admission queue.

    Each call into Ray's metrics API costs tens of microseconds on a busy
    replica, a good part of a tiny model's query, so counts and latencies are
    kept here and handed to Ray by :meth:`flush` (once a second, in one go,
    where the calls are quicker), and the queue gauge is set only when it
    changes.
    """

    #: Latencies held before a flush is forced, should the flush task stall.
    MAX_HELD = 50_000

    def __init__(self, model: str) -> None:
        self._tags = {"model": model}
        self._answered: collections.Counter[int] = collections.Counter()
        self._latencies_ms: list[float] = []
        self._batch_sizes: list[int] = []
        self._last_queue = -1
        self._requests = metrics.Counter(
            "seedserve_requests", "Queries answered, by HTTP status.", tag_keys=("model", "status")
        )
        self._latency = metrics.Histogram(
            "seedserve_request_latency_ms", "Time a query spends in the model replica (ms).",
            boundaries=_LATENCY_BOUNDARIES_MS, tag_keys=("model",),
        )
        self._batch = metrics.Histogram(
            "seedserve_batch_size", "Items per batched model call.", boundaries=_BATCH_BOUNDARIES, tag_keys=("model",)
        )
        self._queue = metrics.Gauge(
            "seedserve_queue_length", "Queries waiting for an admission slot in a replica.", tag_keys=("model",)
        )

    def answered(self, status: int, seconds: float) -> None:
        self._answered[status] += 1
        self._latencies_ms.append(seconds * 1000)
        if len(self._latencies_ms) >= self.MAX_HELD:
            self.flush()

    def batch(self, size: int) -> None:
        self._batch_sizes.append(size)

    def queue(self, waiting: int) -> None:
        if waiting != self._last_queue:
            self._queue.set(waiting, tags=self._tags)
            self._last_queue = waiting

    def flush(self) -> None:
        """Hand the counts, latencies and batch sizes kept since the last flush to Ray."""
        counts, self._answered = self._answered, collections.Counter()
        latencies, self._latencies_ms = self._latencies_ms, []
        for status, count in counts.items():
            self._requests.inc(count, tags={**self._tags, "status": str(status)})
        sizes, self._batch_sizes = self._batch_sizes, []
        for latency_ms in latencies:
            self._latency.observe(latency_ms, tags=self._tags)
        for size in sizes:
            self._batch.observe(size, tags=self._tags)

    async def flush_forever(self, interval_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.flush()


def node_metric_urls(nodes: Iterable[Mapping[str, object]]) -> list[str]:
    """The Prometheus endpoint of every live Ray node (from ``ray.nodes()``)."""
    return [
        f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        for node in nodes
        if node.get("Alive") and node.get("MetricsExportPort")
    ]


# Ray exports application metrics as ray_<name>; seedserve's keep their own names.
_OURS = re.compile(r"^(# (?:HELP|TYPE) )?(?:ray_)?(seedserve_\S*)(.*)$")


async def gather(urls: list[str], extra: Iterable[str] = ()) -> str:
    """seedserve's metric families from every node, one HELP/TYPE per family."""
    async with httpx.AsyncClient(timeout=3) as http:
        pages = await asyncio.gather(*(http.get(url) for url in urls), return_exceptions=True)
    seen_meta: set[str] = set()
    lines: list[str] = []
    for page in pages:
        if isinstance(page, BaseException) or page.status_code != 200:
            continue
        for line in page.text.splitlines():
            match = _OURS.match(line)
            if match is None:
                continue
            meta, name, rest = match.groups()
            if meta:
                if (meta + name) in seen_meta:
                    continue
                seen_meta.add(meta + name)
                lines.append(f"{meta}{name}{rest}")
            else:
                lines.append(f"{name}{rest}")
    # Group each family's samples under its HELP/TYPE lines, as Prometheus expects.
    families: dict[str, list[str]] = {}
    for line in lines:
        name = line.split(" ")[2] if line.startswith("# ") else re.split(r"[{ ]", line, maxsplit=1)[0]
        family = re.sub(r"_(bucket|sum|count|total)$", "", name)
        families.setdefault(family, []).append(line)
    body = [line for group in families.values() for line in sorted(group, key=lambda l: not l.startswith("# "))]
    return "\n".join([*body, *extra]) + "\n"


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
