"""The delay between query and response, p50 and p99, at a request rate.

A prediction of one model call (seedserve.profiler.predict) is not what a
client waits for. End to end, a query also pays its path on the replica
(HTTP, key check, decode, encode: ``path_s``), waits for the replica to be
free, and may share a call with other queries. This module answers "what p50
and p99 does a client see at ``rate`` queries per second on ``replicas``
replicas" for the replica's own batch policy, by simulating it.

Why a simulation and not a formula: a batching server's waiting time has no
closed form that holds from light load to near capacity (M/D/1 does for
batch 1; batches that grow with the queue do not), and the policy to model
is the replica's own (seedserve.dispatch): a lone query runs at once; while a
call runs, arriving queries queue and the next call takes up to
``batch_size`` of them. When the manifest sets a wait, a slow model's
queries that find it busy go through Serve's batching, which closes a batch
``max_wait_s`` after its first query (or when full) whether or not the
model is free, and runs closed batches in turn (ray.serve.batching forms the
next batch while one runs: a waiting batch does not grow). Arrivals are Poisson (independent clients); the call
time at each batch size comes from the latency model, with a lognormal
jitter of coefficient of variation ``cv`` (scheduler noise on a shared
node). Quick models (calls under ``dispatch.INLINE_CALL_S``) run on the
replica's event loop, which also does each query's path: one server does
both. Slower models run on the model's thread, the path on the event loop:
two servers in tandem. Replicas get queries from a shortest-queue router, as
Serve's power-of-two-choices router approximates.

Pure: plain numbers in and out; the random source is a seed.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from seedserve import batch_plan, dispatch
from seedserve.codecs.schema import Batching

__all__ = ["Delay", "Policy", "QueryPath", "call_times", "delay", "policy_of", "saturation_rps"]

#: Queries simulated per prediction: enough for a stable p99 (about 200 above it).
QUERIES = 20_000
#: Past this utilization the queue grows without bound: the answer is "infinite".
UNSTABLE = 0.995


@dataclass(frozen=True)
class Policy:
    """How a replica forms its calls (the manifest's batching, as dispatch reads it)."""

    #: Items per call at most (dispatch.batch_size).
    batch_size: int = dispatch.DEFAULT_MAX_BATCH_SIZE
    #: How long a call waits for more queries to join, when the manifest sets a wait and a batch is forming.
    max_wait_s: float = 0.0
    #: The replica chooses the batch size up to ``batch_size`` (the manifest
    #: leaves it open) and the wait (the manifest sets none), as
    #: seedserve.batch_plan does from the call times and the rate: see :meth:`at`.
    chosen_size: bool = False
    chosen_wait: bool = False

    def at(self, call: Callable[[int], float], rate: float) -> Policy:
        """The policy a replica serves with when ``call(b)`` is its call time
        at ``b`` items and ``rate`` queries a second arrive (this one when
        nothing is left to choose). A quick model's queries never wait on a
        timer (Route.TOGETHER), so its chosen wait is none."""
        if not (self.chosen_size or self.chosen_wait):
            return self
        curve = batch_plan.CallCurve({n: call(n) for n in batch_plan.sizes_to_measure(self.batch_size)})
        wait = 0.0 if dispatch.inline(call(1)) else None
        chosen = batch_plan.plan(curve, rate, self.batch_size,
                                 pinned_size=None if self.chosen_size else self.batch_size,
                                 pinned_wait_s=wait if self.chosen_wait else self.max_wait_s)
        return Policy(batch_size=chosen.batch_size, max_wait_s=chosen.wait_s)


def policy_of(batching: Batching) -> Policy:
    """The policy a replica serves a manifest's batching with (dispatch.batch_size
    before the replica checks a sample: the manifest's size, or the default
    as the cap of the size it chooses; the manifest's wait, or one it chooses)."""
    return Policy(batch_size=dispatch.batch_size(batching.max_batch_size, None),
                  max_wait_s=(batching.max_wait_ms or 0.0) / 1000,
                  chosen_size=batching.max_batch_size is None, chosen_wait=batching.max_wait_ms is None)


@dataclass(frozen=True)
class Delay:
    """A query's predicted delay between query and response, in seconds."""

    p50_s: float
    p99_s: float
    mean_s: float
    #: The model server's busy fraction (1.0: at or past capacity; then the percentiles are infinite).
    utilization: float
    #: Mean queries per model call.
    mean_batch: float


@dataclass(frozen=True)
class QueryPath:
    """What a query costs besides its model call, on a node.

    ``path_s`` is the replica's own work per query on its event loop (HTTP
    parsing, key check, admission, decode, encode, metrics): it occupies the
    replica. ``fixed_s`` is latency that does not (the ingress proxy's hop,
    loopback or network): it is added to every delay. The defaults are a
    guess at the fast end, used by the recommendation until a node's own are
    known; benchmarks/end_to_end.py measures both on its node with a probe
    model before it predicts (2026-12-03, 2 cores: path 0.49 ms, and 1.9 ms
    fixed at a low rate, which includes waking idle processes). Decode and
    encode of large inputs add to ``path_s``."""

    path_s: float = 0.0004
    fixed_s: float = 0.0004
    #: Coefficient of variation of a call's time (scheduler noise).
    cv: float = 0.15
    queries: int = 4000
    seed: int = 0
    #: Extra latency a lone query sees on the node, as samples (seconds; e.g. a
    #: probe's lone latencies less their median): each query's delay gets one,
    #: drawn at random; it occupies nothing. Empty: none.
    noise_s: tuple[float, ...] = ()

    def delay(self, call: Callable[[int], float], rate: float, policy: Policy) -> Delay:
        """The delay at ``rate`` on one replica (:func:`delay`), with ``fixed_s`` added."""
        answer = delay(call, self.path_s, rate, policy=policy, cv=self.cv, seed=self.seed, queries=self.queries,
                       noise_s=self.noise_s)
        return Delay(answer.p50_s + self.fixed_s, answer.p99_s + self.fixed_s, answer.mean_s + self.fixed_s,
                     answer.utilization, answer.mean_batch)


def call_times(seconds: Mapping[int, float]) -> Callable[[int], float]:
    """The call time at any batch size from predictions at some: linear
    between the nearest two known sizes (a call's fixed cost plus a cost per
    item), extended past the largest with the last slope."""
    known = sorted(seconds.items())
    if not known:
        raise ValueError("call_times needs the call time at one batch size at least")

    def at(batch: int) -> float:
        if len(known) == 1:
            size, value = known[0]
            return value * batch / size if batch > size else value
        lower = max((p for p in known if p[0] <= batch), default=known[0])
        upper = min((p for p in known if p[0] > batch), default=known[-1])
        if upper[0] == lower[0]:
            lower, upper = known[-2], known[-1]
        slope = (upper[1] - lower[1]) / (upper[0] - lower[0])
        return max(lower[1] + slope * (batch - lower[0]), 1e-9)

    return at


def saturation_rps(call: Callable[[int], float], path_s: float, policy: Policy) -> float:
    """Queries per second one replica serves at most: full batches back to back
    (on the event loop with the path, when calls are quick)."""
    batch = policy.at(call, 0.0).batch_size  # the size a replica chooses does not depend on the rate
    model = batch / call(batch)
    loop = 1 / path_s if path_s > 0 else math.inf
    if dispatch.inline(call(1)):
        return batch / (call(batch) + batch * path_s)
    return min(model, loop)


def delay(call: Callable[[int], float], path_s: float, rate: float, *, replicas: int = 1,
          policy: Policy = Policy(), cv: float = 0.1, seed: int = 0, queries: int = QUERIES,
          noise_s: tuple[float, ...] = ()) -> Delay:
    """p50, p99 and mean delay of a query arriving at ``rate`` per second
    (Poisson) on ``replicas`` replicas, each calling the model in ``call(b)``
    seconds for ``b`` queries and spending ``path_s`` per query on its event
    loop; each query's delay plus one of ``noise_s`` drawn at random, if given."""
    utilization = rate / (replicas * saturation_rps(call, path_s, policy))
    policy = policy.at(call, rate / replicas)
    if utilization >= UNSTABLE:
        return Delay(math.inf, math.inf, math.inf, 1.0, float(policy.batch_size))
    rng = random.Random(seed)
    sigma = math.sqrt(math.log(1 + cv * cv))

    def jitter() -> float:  # lognormal with mean 1
        return rng.lognormvariate(-sigma * sigma / 2, sigma) if cv > 0 else 1.0

    arrivals = _poisson(rng, rate, queries)
    servers = [_Replica(call, path_s, policy, jitter) for _ in range(replicas)]
    for t in arrivals:
        min(servers, key=lambda s: s.pending(t)).arrive(t)
    per_replica = [s.finish() for s in servers]  # each in arrival order
    if noise_s:
        per_replica = [[d + rng.choice(noise_s) for d in ds] for ds in per_replica]
    delays = sorted(d for ds in per_replica for d in ds)
    batches = [b for s in servers for b in s.batches]
    # The mean leaves out each replica's first queries, which found it empty
    # (the percentiles of so many queries hardly move with them).
    warm = [d for ds in per_replica for d in (ds[len(ds) // 20:] if len(ds) > 100 else ds)]
    return Delay(p50_s=_quantile(delays, 0.5), p99_s=_quantile(delays, 0.99), mean_s=sum(warm) / len(warm),
                 utilization=utilization, mean_batch=sum(batches) / max(len(batches), 1))


def _poisson(rng: random.Random, rate: float, n: int) -> list[float]:
    t, times = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        times.append(t)
    return times


def _quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


class _Replica:
    """One replica's event loop and model thread, simulated query by query.

    Arrivals come in time order. The event loop does each query's path
    first-come first-served; a query is ready for the model when its path is
    done. The model takes every ready query (up to the batch size) when it
    becomes free; a lone ready query with nothing running starts at once.
    With quick (inline) calls the event loop is the model's thread too."""

    def __init__(self, call: Callable[[int], float], path_s: float, policy: Policy,
                 jitter: Callable[[], float]) -> None:
        self._call, self._path_s, self._policy, self._jitter = call, path_s, policy, jitter
        self._inline = dispatch.inline(call(1))
        self._arrivals: list[float] = []
        self._recent: deque[float] = deque()
        self.batches: list[int] = []

    def pending(self, now: float) -> int:
        """The router's estimate of this replica's queue at ``now``: the
        queries sent here within the last few call times."""
        horizon = now - 4 * (self._call(1) + self._path_s)
        while self._recent and self._recent[0] < horizon:
            self._recent.popleft()
        return len(self._recent)

    def arrive(self, t: float) -> None:
        self._arrivals.append(t)
        self._recent.append(t)

    def finish(self) -> list[float]:
        """Every query's delay, in arrival order."""
        if self._inline:
            return self._one_server(self._arrivals)
        if self._policy.max_wait_s > 0:
            return self._serve_batched(self._arrivals)
        return self._tandem(self._arrivals)

    def _one_server(self, arrivals: list[float]) -> list[float]:
        # The event loop decodes, calls and encodes: per call, each query's path plus one model call.
        return self._greedy(arrivals, arrivals, self._path_s)

    def _tandem(self, arrivals: list[float]) -> list[float]:
        # Stage 1: the event loop's path per query (FIFO). Stage 2: the model thread, batching ready queries.
        return self._greedy(arrivals, self._after_path(arrivals), 0.0)

    def _after_path(self, arrivals: list[float]) -> list[float]:
        """When each query's path on the event loop (first come, first served) is done."""
        loop_free, ready = 0.0, []
        for t in arrivals:
            loop_free = max(loop_free, t) + self._path_s
            ready.append(loop_free)
        return ready

    def _greedy(self, arrivals: list[float], ready: list[float], per_query_s: float) -> list[float]:
        """Each query's delay when the model, once free, takes every ready query
        up to the batch size (see :meth:`_waited`); a call costs ``per_query_s``
        per query on top of the model's time."""
        done = [0.0] * len(arrivals)
        free, i, n = 0.0, 0, len(ready)
        while i < n:
            start = max(free, ready[i])
            j = i + 1
            while j < n and j - i < self._policy.batch_size and ready[j] <= start:
                j += 1
            start, j = self._waited(ready, i, j, start)
            count = j - i
            free = start + count * per_query_s + self._call(count) * self._jitter()
            self.batches.append(count)
            for k in range(i, j):
                done[k] = free - arrivals[k]
            i = j
        return done

    def _serve_batched(self, arrivals: list[float]) -> list[float]:
        # Stage 1 as in _tandem. Stage 2 as Serve's @serve.batch forms batches
        # (ray.serve.batching: wait_for_batch is called again as soon as a batch
        # is handed to its task, whatever the model is doing): a query that finds
        # the model free and nothing pending runs alone at once (Route.EXECUTOR);
        # any other opens a batch, or joins the open one, which closes
        # ``max_wait_s`` after its first query (or when full) and then waits for
        # the model first-come first-served. Batches do not grow while they wait.
        ready = self._after_path(arrivals)
        done = [0.0] * len(arrivals)
        free, i, n = 0.0, 0, len(ready)
        while i < n:
            first = ready[i]
            j = i + 1
            if free > first:  # the model is busy: a batch forms for max_wait_s
                close = first + self._policy.max_wait_s
                while j < n and j - i < self._policy.batch_size and ready[j] <= close:
                    j += 1
                if j - i >= self._policy.batch_size:
                    close = ready[j - 1]
                first = max(free, close)
            count = j - i
            free = first + self._call(count) * self._jitter()
            self.batches.append(count)
            for k in range(i, j):
                done[k] = free - arrivals[k]
            i = j
        return done

    def _waited(self, ready: list[float], i: int, j: int, start: float) -> tuple[float, int]:
        """With a manifest wait, a forming batch (more than one query, or the
        model busy until ``start``) waits up to ``max_wait_s`` for more."""
        wait = self._policy.max_wait_s
        if wait <= 0 or j - i >= self._policy.batch_size or (j - i == 1 and start == ready[i]):
            return start, j
        deadline = ready[i] + wait
        while j < len(ready) and j - i < self._policy.batch_size and ready[j] <= deadline:
            j += 1
        full = j - i >= self._policy.batch_size
        return (max(start, ready[j - 1]) if full else max(start, deadline)), j

