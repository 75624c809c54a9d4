"""What the dashboard reads from the master over HTTP: the cluster (nodes,
applications, replicas) and live per-model numbers from ``/metrics``; and the
"try it" form's query, forwarded with the key the user typed."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["MasterView", "LiveStats", "quantile_from_buckets"]


@dataclass
class LiveStats:
    requests_per_s: float | None = None
    errors_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None


@dataclass
class _Scrape:
    at: float
    #: model -> (answered, errors)
    counts: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: model -> cumulative latency buckets [(upper bound ms, count)], summed over its versions
    buckets: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


def quantile_from_buckets(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile of a cumulative Prometheus histogram, interpolated
    linearly inside its bucket (as PromQL's ``histogram_quantile``)."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            span = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / span if span else 1.0)
        lower_bound, lower_count = bound, count
    return lower_bound


def _parse(text: str) -> _Scrape:
    scrape = _Scrape(at=time.monotonic())
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            model = sample.labels.get("model")
            if model is None:
                continue
            # Summed over the model's versions.
            if sample.name == "seedserve_requests_total":
                answered, errors = scrape.counts.get(model, (0.0, 0.0))
                code = sample.labels.get("code", "200")
                failed = not code.isdigit() or int(code) >= 400
                scrape.counts[model] = (answered + sample.value, errors + (sample.value if failed else 0.0))
            elif sample.name == "seedserve_request_duration_seconds_bucket":
                bound = float(sample.labels["le"]) * 1000  # the dashboard shows ms
                per_model = scrape.buckets.setdefault(model, [])
                # Sum across replicas and nodes: same bounds, add the counts.
                for i, (b, c) in enumerate(per_model):
                    if b == bound:
                        per_model[i] = (b, c + sample.value)
                        break
                else:
                    per_model.append((bound, sample.value))
    return scrape


class MasterView:
    """The master at ``url``, read over HTTP with short timeouts."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 3.0) -> None:
        """``token``: sent to the master's operational endpoints (/cluster,
        /metrics), which need the admin or the metrics token."""
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(timeout=timeout_s)
        self._operator = {"authorization": f"Bearer {token}"} if token else {}
        self._previous: _Scrape | None = None

    async def close(self) -> None:
        await self._http.aclose()

    async def health(self) -> dict[str, Any]:
        """The master's ``/healthz`` as the manager's health reports it:
        ``down`` (``["master"]`` when it does not answer, else what it names
        down) and ``report`` (its status, or why it could not be read)."""
        try:
            response = await self._http.get(self.url + "/healthz")
            body = response.json()
            down = [str(name) for name in body.get("down", [])] if isinstance(body, dict) else []
        except (httpx.HTTPError, ValueError) as exc:
            return {"down": ["master"], "report": f"unavailable: the master at {self.url} did not answer: {exc}"}
        if response.status_code not in (200, 503) or not isinstance(body, dict):
            return {"down": ["master"], "report": f"unavailable: the master answered HTTP {response.status_code}"}
        return {"down": down, "report": "ok" if not down else f"degraded: {', '.join(down)} down"}

    async def cluster(self) -> dict[str, Any]:
        """The master's ``/cluster``, or ``{"error": ...}`` when it cannot be read."""
        try:
            response = await self._http.get(self.url + "/cluster", headers=self._operator)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body
        except (httpx.HTTPError, ValueError) as exc:
            return {"error": f"the master at {self.url} did not answer: {exc}"}

    async def live(self) -> dict[str, LiveStats]:
        """Requests/s and latency quantiles per model since the previous read
        (or since the replicas started, on the first read)."""
        try:
            response = await self._http.get(self.url + "/metrics", headers=self._operator)
            response.raise_for_status()
            now = _parse(response.text)
        except (httpx.HTTPError, ValueError):
            return {}
        before = self._previous
        if before is None or now.at - before.at < 1.0:
            before_counts, before_buckets, elapsed = {}, {}, None
        else:
            before_counts, before_buckets, elapsed = before.counts, before.buckets, now.at - before.at
        if elapsed is not None or self._previous is None:
            self._previous = now
        stats: dict[str, LiveStats] = {}
        for model in now.counts.keys() | now.buckets.keys():
            answered, errors = now.counts.get(model, (0.0, 0.0))
            was_answered, was_errors = before_counts.get(model, (0.0, 0.0))
            old = dict(before_buckets.get(model, []))
            delta = [(b, c - old.get(b, 0.0)) for b, c in now.buckets.get(model, [])]
            if not any(c > 0 for _, c in delta):
                delta = now.buckets.get(model, [])
            stats[model] = LiveStats(
                requests_per_s=None if elapsed is None else max(answered - was_answered, 0.0) / elapsed,
                errors_per_s=None if elapsed is None else max(errors - was_errors, 0.0) / elapsed,
                p50_ms=quantile_from_buckets(delta, 0.5),
                p99_ms=quantile_from_buckets(delta, 0.99),
            )
        return stats

    async def query(self, name: str, key: str, body: bytes, content_type: str) -> httpx.Response:
        """The "try it" query, sent to the model's endpoint with ``key``."""
        return await self._http.post(
            f"{self.url}/models/{name}/predict", content=body,
            headers={"authorization": f"Bearer {key}", "content-type": content_type}, timeout=60.0,
        )
