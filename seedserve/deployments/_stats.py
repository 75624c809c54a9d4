"""A model replica's own inference counters, answered at
``GET /v2/models/{name}/stats`` in the statistics extension's shape (the one
Triton and tritonclient use): ``{"model_stats": [{name, version,
last_inference, inference_count, execution_count, inference_stats,
batch_stats}]}``, each duration a ``{"count", "ns"}`` pair.

Counts are this replica's since it started (a model with several replicas
answers from whichever replica Serve routes the request to). Plain
arithmetic, no I/O: the replica calls it and the tests call it directly.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

__all__ = ["InferenceStats"]


class _Duration:
    """A count and the nanoseconds it took in total."""

    __slots__ = ("count", "ns")

    def __init__(self) -> None:
        self.count = 0
        self.ns = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.ns += int(seconds * 1e9)

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


class InferenceStats:
    """Requests (success and failure, with their time in the replica), time
    queued for an admission slot, and model calls (items, time, per batch size).

    ``clock`` gives seconds since the epoch for ``last_inference``."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.success = _Duration()
        self.fail = _Duration()
        self.queue = _Duration()
        self.compute_infer = _Duration()
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0
        self._batches: collections.defaultdict[int, _Duration] = collections.defaultdict(_Duration)

    def answered(self, ok: bool, seconds: float) -> None:
        """A query answered (``ok``: with 200) after ``seconds`` in the replica."""
        (self.success if ok else self.fail).add(seconds)
        if ok:
            self.last_inference_ms = int(self._clock() * 1000)

    def queued(self, seconds: float) -> None:
        """A query waited ``seconds`` for its admission slot."""
        self.queue.add(seconds)

    def call(self, items: int, seconds: float) -> None:
        """One model call on ``items`` items that took ``seconds``."""
        self.execution_count += 1
        self.inference_count += items
        self.compute_infer.add(seconds)
        self._batches[items].add(seconds)

    def as_oip(self, name: str, version: int) -> dict[str, Any]:
        """The statistics extension's answer for this model version."""
        zero = _Duration().as_dict()
        batch_stats = [
            {"batch_size": size, "compute_input": zero, "compute_infer": duration.as_dict(), "compute_output": zero}
            for size, duration in sorted(self._batches.items())
        ]
        return {"model_stats": [{
            "name": name,
            "version": str(version),
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.as_dict(),
                "fail": self.fail.as_dict(),
                "queue": self.queue.as_dict(),
                # Decoding and encoding run around the call, not timed apart (yet): zero, as Triton
                # reports a stage it does not measure.
                "compute_input": zero,
                "compute_infer": self.compute_infer.as_dict(),
                "compute_output": zero,
                "cache_hit": zero,
                "cache_miss": zero,
            },
            "batch_stats": batch_stats,
        }]}
