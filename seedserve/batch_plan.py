"""How a replica batches, chosen from what it measures: pure, like seedserve.dispatch.

A replica measures its model's call time by batch size while it warms up
(:class:`CallCurve`, then corrected by every live call) and counts the
queries arriving (:class:`ArrivalRate`). :func:`plan` turns the two into the
:class:`Plan` it serves with, and the replica plans again as the rate moves:

- **Batch size**: the knee of the measured curve, the largest size whose
  doubling still bought at least :data:`KNEE_GAIN` more items per second
  (beyond it a larger batch only makes each call longer). It bounds a call;
  how many queries a call takes is what is queued when its batch is formed,
  so the batches seen grow with the arrival rate.
- **Wait**: none while one query at a time keeps up with the rate (the busy
  fraction at batch 1 below :data:`WAIT_FROM_LOAD`): a lone query never waits
  for company. Past it, a forming batch waits for more queries: as long as
  filling the batch takes at the current rate, and never longer than one
  call at batch 1, so that a query waits at most what one more call would
  have cost it. Fewer, fuller calls leave the CPUs to reading and decoding.

- **Threads and calls in flight**: a replica that reserves ``n`` whole
  CPUs (``scaling.num_cpus``) may run one call on ``n`` torch threads, or
  ``n / t`` calls at once on ``t`` threads each (:func:`splits`). Warm-up
  measures each at the knee's batch size; :func:`parallelism` keeps the
  most threads per call (the shortest calls) unless fewer threads and more
  calls at once buy at least :data:`KNEE_GAIN` more items per second. A
  replica with less than two CPUs runs one call at a time on one thread.

The manifest can pin either value (``batching.max_batch_size``,
``batching.max_wait_ms``); a pinned value is served as written. Plain values
in, plain values out: no Ray, no torch, no clock (callers pass the time).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "CALL_OVERHEAD_S", "KNEE_GAIN", "PLAN_EVERY_S", "WAIT_FROM_LOAD", "ArrivalRate", "CallCurve", "Parallelism",
    "Plan", "knee", "parallelism", "plan", "reserved_cpus", "sizes_to_measure", "splits",
]

#: A doubling of the batch size that raises items per second by less than
#: this factor is not worth its longer calls.
KNEE_GAIN = 1.05
#: What a call costs a serving replica beyond its time in a warm loop (the
#: hop to the model's thread, merging and splitting, caches the queries'
#: own code evicted): counted once per call when the knee is found.
CALL_OVERHEAD_S = 1e-4
#: The busy fraction at batch 1 (arrival rate x one call's time) from which a forming batch waits for more queries.
WAIT_FROM_LOAD = 0.5
#: How often a replica plans again (seconds): the rate's time constant is a second.
PLAN_EVERY_S = 0.25
#: The weight of one live call in a size's measured call time.
LIVE_WEIGHT = 0.05


@dataclass(frozen=True)
class Plan:
    """What a replica serves with."""

    #: Items per model call at most.
    batch_size: int
    #: How long a forming batch waits for more queries (seconds); 0: none.
    wait_s: float
    #: Why, in words (logged when the plan changes, shown in the replica's record).
    reason: str


def sizes_to_measure(cap: int) -> list[int]:
    """The batch sizes warm-up measures: powers of two up to ``cap``, and ``cap``."""
    sizes = [1 << i for i in range(cap.bit_length()) if 1 << i <= cap]
    return sizes if sizes[-1] == cap else [*sizes, cap]


class CallCurve:
    """Seconds per model call by batch size: measured at a few sizes, in between
    read off the line through the two nearest (beyond the largest, items scale
    the largest's time). Live calls move their nearest measured size by
    :data:`LIVE_WEIGHT` each, so the curve follows the replica as it runs."""

    def __init__(self, measured: Mapping[int, float]) -> None:
        if not measured or min(measured) < 1 or min(measured.values()) <= 0:
            raise ValueError(f"a call curve needs positive times at sizes >= 1: {dict(measured)}")
        self._seconds = dict(sorted(measured.items()))

    @property
    def sizes(self) -> list[int]:
        return list(self._seconds)

    def seconds(self, items: int) -> float:
        """A call's time at ``items`` items."""
        sizes = self.sizes
        if items <= sizes[0]:
            return self._seconds[sizes[0]]
        if items >= sizes[-1]:
            return self._seconds[sizes[-1]] * items / sizes[-1]
        upper = next(size for size in sizes if size >= items)
        lower = max(size for size in sizes if size <= items)
        if upper == lower:
            return self._seconds[upper]
        share = (items - lower) / (upper - lower)
        return self._seconds[lower] + share * (self._seconds[upper] - self._seconds[lower])

    def add(self, items: int, seconds: float) -> None:
        """One live call of ``items`` that took ``seconds``: a measured size
        moves toward it (past the largest, the largest toward it scaled by
        items); a call between measured sizes moves none, since moving a
        neighbour toward it would bias that size's time."""
        largest = self.sizes[-1]
        if items > largest:
            self._seconds[largest] += LIVE_WEIGHT * (seconds * largest / items - self._seconds[largest])
        elif items in self._seconds:
            self._seconds[items] += LIVE_WEIGHT * (seconds - self._seconds[items])

    def as_dict(self) -> dict[int, float]:
        return dict(self._seconds)


class ArrivalRate:
    """Items arriving per second, exponentially weighted with time constant
    ``tau_s``: each arrival adds 1/tau, and the sum decays by e every tau."""

    def __init__(self, tau_s: float = 1.0) -> None:
        self._tau = tau_s
        self._value = 0.0
        self._last = -math.inf

    def add(self, now: float, items: int = 1) -> None:
        self._value = self.rate(now) + items / self._tau
        self._last = now

    def rate(self, now: float) -> float:
        if self._value == 0.0:
            return 0.0
        return self._value * math.exp(-max(0.0, now - self._last) / self._tau)


def knee(curve: CallCurve, cap: int) -> int:
    """The largest measured size up to ``cap`` reached by steps that each
    raised items per second (a call's time plus :data:`CALL_OVERHEAD_S`) by
    at least :data:`KNEE_GAIN`."""

    def throughput(size: int) -> float:
        return size / (curve.seconds(size) + CALL_OVERHEAD_S)

    best = 1
    for size in curve.sizes:
        if size > cap:
            break
        if size > best and throughput(size) < KNEE_GAIN * throughput(best):
            break
        best = size
    return best


def plan(curve: CallCurve, rate_per_s: float, cap: int, *, pinned_size: int | None = None,
         pinned_wait_s: float | None = None) -> Plan:
    """The batch size and wait to serve with at ``rate_per_s`` items a second
    (see the module's text). ``cap``: the largest batch the model takes (1:
    batching is off); ``pinned_*``: the manifest's values, served as written."""
    size = min(pinned_size, cap) if pinned_size is not None else knee(curve, cap)
    if pinned_wait_s is not None:
        return Plan(size, pinned_wait_s if size > 1 else 0.0, "as the manifest pins it")
    one_call = curve.seconds(1)
    load = rate_per_s * one_call
    where = f"batch {size} is the knee of the measured call times" if pinned_size is None else "batch size pinned"
    if size == 1 or load < WAIT_FROM_LOAD:
        return Plan(size, 0.0, f"{where}; one query at a time keeps up ({load:.0%} busy at batch 1): no wait")
    fill_s = (size - 1) / rate_per_s
    wait = min(fill_s, one_call)
    return Plan(size, wait, f"{where}; {load:.0%} busy at batch 1: a forming batch waits {wait * 1e3:.2f} ms "
                            f"(filling it takes {fill_s * 1e3:.2f} ms, one call {one_call * 1e3:.2f} ms)")


@dataclass(frozen=True)
class Parallelism:
    """How a replica runs its model calls."""

    #: torch's intra-op threads per call.
    threads: int
    #: Model calls that may run at once (each on its own thread of the replica).
    flights: int
    #: Why, in words, with the items per second measured for each split.
    reason: str


def reserved_cpus(num_cpus: float) -> int:
    """The whole CPUs a replica reserves (``scaling.num_cpus``), at least 1:
    the threads its calls may use without taking another replica's."""
    return max(1, int(num_cpus + 1e-9))


def splits(cpus: int) -> list[tuple[int, int]]:
    """(threads per call, calls in flight) that fill ``cpus``: threads from
    ``cpus`` down by halves to 1, each with as many calls as fit beside it."""
    threads = []
    t = cpus
    while t >= 1:
        threads.append(t)
        t //= 2
    return [(t, cpus // t) for t in threads]


def parallelism(cpus: int, items_per_s: Mapping[tuple[int, int], float],
                unmeasured: str = "no split measured") -> Parallelism:
    """The split to serve with, from the items per second measured for each
    of :func:`splits` (a split not measured is not chosen): the most threads
    per call, unless fewer and more calls at once buy :data:`KNEE_GAIN`
    more than the best so far. Nothing measured: one call at a time on
    every reserved CPU, because ``unmeasured``."""
    measured = {split: rate for split, rate in items_per_s.items() if rate > 0}
    if cpus <= 1:
        return Parallelism(1, 1, f"{cpus} reserved CPU: one call at a time on one thread")
    if not measured:
        return Parallelism(cpus, 1, f"{cpus} reserved CPUs: one call at a time on all of them ({unmeasured})")
    ordered = [split for split in splits(cpus) if split in measured]
    best = ordered[0]
    for split in ordered[1:]:
        if measured[split] >= KNEE_GAIN * measured[best]:
            best = split
    seen = ", ".join(f"{t} thread(s) x {k} call(s): {measured[(t, k)]:.0f} items/s" for t, k in ordered)
    return Parallelism(best[0], best[1], f"{best[0]} thread(s) a call, {best[1]} call(s) at once on {cpus} "
                                         f"reserved CPUs (measured {seen})")
