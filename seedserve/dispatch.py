"""How a replica turns queries into model calls: its decisions, pure.

Plain values in, plain values out: no Ray, no torch, no clock, no I/O. The
model server (seedserve.deployments.model_server) measures and calls; this
module decides, and so does the Ray-free runtime path (benchmarks/gpu_check.py
merges and splits queries with :func:`merged_calls` and :func:`shares`).

- :func:`batch_size`: the batch size a replica serves with.
- :func:`route`: which of four routes a query takes to its model call.
- :func:`calls`, :func:`merged_calls`: which queued queries run in one call.
- :func:`shares`: each query's part of a merged call's outputs.
- :func:`capacity`: how many queries a replica admits at once.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Hashable, Iterator, Mapping, Sequence

import numpy as np

from seedserve.codecs.batching import merge, signature, split
from seedserve.codecs.registry import Decoded, Kind
from seedserve.errors import ModelError, SeedserveError

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE", "INLINE_CALL_S", "TOGETHER_TURNS", "Route", "batch_size", "calls", "capacity",
    "inline", "merged_calls", "route", "shares",
]

#: Items per batch when the manifest leaves batching to seedserve.
DEFAULT_MAX_BATCH_SIZE = 16

#: Model calls quicker than this (on average) run on the event loop: a hop
#: to the model's thread would cost more than the call.
INLINE_CALL_S = 0.001

#: Turns of the event loop a quick model's queries wait for others to join
#: their call (Route.TOGETHER). One more turn takes in the queries whose
#: bodies arrived meanwhile: measured with a tiny MLP at 16 connections,
#: batches of 3.6 became 6.4 and throughput rose by a fifth; a third turn
#: added nothing. Alone, a query waits microseconds.
TOGETHER_TURNS = 2

#: A query's decoded inputs and its item count.
Query = tuple[dict[str, Decoded], int]


class Route(enum.Enum):
    """The way a query goes to its model call."""

    #: With the queries decoded within the next TOGETHER_TURNS turns of the event loop, in one call.
    TOGETHER = "together"
    #: Through Serve's ``@serve.batch``, which may wait up to the manifest's max_wait_ms for a batch to fill.
    SERVE_BATCH = "serve_batch"
    #: Alone, on the event loop.
    INLINE = "inline"
    #: Alone, on the model's thread, while the event loop reads and decodes other queries.
    EXECUTOR = "executor"


def batch_size(configured: int | None, refusal: str | None) -> int:
    """The batch size to serve with: 1 when the manifest says 1 or batching
    was refused (``refusal``: why, e.g. a fixed batch dimension or outputs
    that do not split per item), else the manifest's, or the default when it
    leaves it open."""
    if configured == 1 or refusal is not None:
        return 1
    return configured or DEFAULT_MAX_BATCH_SIZE


def route(items: int, batch_size: int, max_wait_ms: float, call_s: float, running: int) -> Route:
    """How a query of ``items`` goes to its model call, on a replica serving
    ``batch_size`` whose calls take ``call_s`` on average, with ``running``
    queries admitted (this one included).

    A query that could share a call does when another query is running: in
    the same turns of the event loop when the model is quick and the manifest
    sets no wait (TOGETHER), else through Serve's batching. A lone query
    never waits, not even a few turns of the loop (measured with the tiny MLP
    at one connection: those turns were ~40 us of a ~0.7 ms answer). Alone, it
    runs on the event loop when calls are quick, on the model's thread
    otherwise."""
    if 1 < batch_size and items < batch_size and running > 1:
        if inline(call_s) and not max_wait_ms:
            return Route.TOGETHER
        return Route.SERVE_BATCH
    return Route.INLINE if inline(call_s) else Route.EXECUTOR


def inline(call_s: float) -> bool:
    """Whether calls that take ``call_s`` on average run on the event loop (a
    hop to the model's thread would cost more than the call)."""
    return call_s < INLINE_CALL_S


def calls(signatures: Sequence[Hashable], counts: Sequence[int], max_items: int) -> list[list[int]]:
    """The queries (by index) that run together: one model call per group of
    the same signature (inputs that merge), of at most ``max_items`` items,
    or one query alone when it is larger. Order within a call is arrival order."""
    groups: dict[Hashable, list[list[int]]] = defaultdict(list)
    sizes: dict[Hashable, int] = {}
    for i, (key, count) in enumerate(zip(signatures, counts, strict=True)):
        if key not in groups or sizes[key] + count > max_items:
            groups[key].append([])
            sizes[key] = 0
        groups[key][-1].append(i)
        sizes[key] += count
    return [members for chunks in groups.values() for members in chunks]


def merged_calls(queries: Sequence[Query], max_items: int,
                 kinds: Mapping[str, Kind]) -> Iterator[tuple[list[int], list[int], dict[str, Decoded]]]:
    """Per model call (see :func:`calls`): its queries' indices, their item
    counts, and its inputs (a lone query's own, else the queries' merged, as
    each input's kind in ``kinds`` merges)."""
    grouped = calls([signature(arrays, kinds) for arrays, _ in queries], [count for _, count in queries], max_items)
    for members in grouped:
        inputs = merge([queries[i][0] for i in members], kinds) if len(members) > 1 else queries[members[0]][0]
        yield members, [queries[i][1] for i in members], inputs


def shares(outputs: dict[str, np.ndarray] | SeedserveError,
           counts: Sequence[int]) -> list[dict[str, np.ndarray] | SeedserveError]:
    """Each query's rows of a merged call's outputs (``counts``: each query's
    items, in call order), or the error each hears: the call's own, or that
    the outputs do not split per query."""
    if isinstance(outputs, SeedserveError):
        return [outputs] * len(counts)
    if len(counts) == 1:
        return [outputs]
    try:
        return list(split(outputs, counts))
    except ValueError as exc:
        return [ModelError(f"the model's outputs could not be split per query: {exc}")] * len(counts)


def capacity(max_ongoing_requests: int, batch_size: int, flights: int = 1) -> int:
    """Queries a replica runs at once: the manifest's limit, and, with
    ``flights`` model calls at once (seedserve.batch_plan.parallelism), a full
    batch for each call and one more filling while they run (one query per
    call when batching is off)."""
    return max(max_ongoing_requests, (flights + 1) * batch_size if batch_size > 1 else flights)
