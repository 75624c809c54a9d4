"""Latency prediction per worker type and batch size, and the worker recommendation.

The latency model is a calibrated roofline: a fixed cost per call, and per op
a fixed cost plus the larger of its compute time (FLOPs at the rate its kind
achieves) and its memory time (bytes at the achieved bandwidth). Worker
types with a calibration use it; others use the catalog's peaks times a
default efficiency and are marked uncalibrated.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from pydantic import BaseModel

from seedserve.codecs.schema import Objective
from seedserve.profiler.calibrate import Calibration, KindFit, SweepPoint
from seedserve.profiler.catalog import Catalog, WorkerType
from seedserve.profiler.profile import BatchProfile, ModelProfile
from seedserve.profiler.queueing import Delay, Policy, QueryPath, call_times, saturation_rps
from seedserve.profiler.trace import GATHER, GEMM, KINDS, MEMORY, ROW_OPS, VIEW

__all__ = ["Objective", "Prediction", "Recommendation", "TERMS", "assumed_calibration", "predict", "predict_s",
           "recommend", "split_s", "terms_s"]



class Prediction(BaseModel):
    worker_type: str
    calibrated: bool
    batch_size: int
    #: The torch threads of one call, as calibrated (replicas report theirs with their measurements).
    threads: int = 0
    latency_ms: float
    compute_ms: float
    memory_ms: float
    overhead_ms: float
    assumptions: list[str]
    #: Measured by replicas on this worker type (median call, at their mean batch size), when traffic has flowed.
    measured_p50_ms: float | None = None
    measured_mean_items: float | None = None


def assumed_calibration(worker: WorkerType, catalog: Catalog) -> Calibration:
    """A calibration from the catalog's peaks for a type no node has measured."""
    efficiency = catalog.defaults.uncalibrated_efficiency
    overhead = catalog.defaults.uncalibrated_overhead_s[worker.device]
    bandwidth = worker.bandwidth * efficiency.bandwidth
    compute = worker.peak_fp32 * efficiency.compute
    kinds = {kind: KindFit(overhead_s=overhead.op, flops_per_s=None if kind == MEMORY else compute,
                           bytes_per_s=bandwidth) for kind in KINDS if kind != VIEW}
    return Calibration(worker_type=worker.name, calibrated=False, host="(catalog)", threads=0,
                       measured_at=datetime.now(UTC), call_overhead_s=overhead.call,
                       view_overhead_s=overhead.op / 4, kinds=kinds)


#: The terms of a call's predicted time.
TERMS = ("call", "op_overhead", "views", "gemm", "conv", "dwconv", "rnn", "memory", "weights")
_COMPUTE_TERMS = ("gemm", "conv", "dwconv", "rnn")


def terms_s(batch: BatchProfile, calibration: Calibration) -> dict[str, float]:
    """The unweighted terms of one call, in seconds: the fixed cost per call
    and per view, and per op kind the time of its ops. An op's time is looked
    up among the calibration's sweep points of its kind (compute ops by FLOPs
    and reduction length, row gathers and scatters by rows and bytes per row,
    other memory ops by bytes and name); a type without points (uncalibrated)
    uses the roofline of its kind's fit. The sweeps run each op on weights hot
    in cache; a model whose weights do not fit streams them on every call, so
    its compute ops take at least the weights' streaming time ("weights")."""
    terms = dict.fromkeys(TERMS, 0.0)
    for kind, flops, size, name, reduction in batch.ops:
        fit = calibration.kinds.get(kind) or calibration.kinds[GEMM if flops else MEMORY]
        points = calibration.points.get(kind) or []
        if kind == GATHER and not any(p.name == name for p in points):
            # A gather the sweeps did not run moves bytes like an elementwise op.
            kind, fit, points = MEMORY, calibration.kinds[MEMORY], calibration.points.get(MEMORY) or []
        if kind == GATHER and name in ROW_OPS and reduction > 0:
            rows = [p for p in points if p.name == name and p.reduction > 0]
            if len(rows) >= 2:  # a calibration older than row counts has none
                terms["memory"] += _rows_s(rows, size, reduction)
                continue
        looked_up = _lookup_s(points, fit, flops, size, name, reduction)
        if looked_up is not None:
            terms[kind if kind in terms else "memory"] += looked_up
            continue
        terms["op_overhead"] += fit.overhead_s
        flop_s = flops / fit.flops_per_s if fit.flops_per_s and flops else 0.0
        byte_s = size / fit.bytes_per_s
        if flop_s >= byte_s and kind in terms:
            terms[kind] += flop_s
        else:
            terms["memory"] += max(flop_s, byte_s)
    terms["call"] = calibration.call_overhead_s
    terms["views"] = batch.views * calibration.view_overhead_s
    if batch.weight_bytes and calibration.streaming:
        compute = sum(terms[k] for k in _COMPUTE_TERMS)
        terms["weights"] = max(0.0, _streaming_s(calibration.streaming, batch.weight_bytes) - compute)
    return terms


def _interpolate(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise linear through (xs, ys) (xs ascending), flat past either end."""
    if x <= xs[0]:
        return ys[0]
    for (x0, y0), (x1, y1) in itertools.pairwise(zip(xs, ys, strict=True)):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[-1]


def _by_log(pairs: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """(log x, median of log y at that x), ascending in x."""
    grouped: dict[float, list[float]] = {}
    for x, y in pairs:
        grouped.setdefault(math.log(max(x, 1)), []).append(math.log(y))
    xs = sorted(grouped)
    return xs, [statistics.median(grouped[x]) for x in xs]


def _streaming_s(points: Sequence[Sequence[float]], weight_bytes: int) -> float:
    """Time to read ``weight_bytes`` of weights once, at the cost per byte the
    weight chains measured at that working-set size."""
    xs, ys = _by_log([(p[0], p[1] / p[0]) for p in points])
    return weight_bytes * math.exp(_interpolate(xs, ys, math.log(max(weight_bytes, 1))))


def _rows_s(points: Sequence[SweepPoint], size: int, rows: int) -> float:
    """A row gather or scatter (swept over rows and row widths): the cost
    per row interpolated in log rows within each swept width (bytes per
    row), then between the two nearest widths."""
    by_width: dict[float, list[SweepPoint]] = {}
    for p in points:
        by_width.setdefault(round(math.log(p.bytes / p.reduction), 1), []).append(p)
    widths, costs = [], []
    for _, group in sorted(by_width.items()):
        widths.append(statistics.median(math.log(p.bytes / p.reduction) for p in group))
        xs, ys = _by_log([(p.reduction, p.seconds / p.reduction) for p in group])
        costs.append(_interpolate(xs, ys, math.log(rows)))
    return rows * math.exp(_interpolate(widths, costs, math.log(max(size, 1) / rows)))


_PLAIN_ELEMENTWISE = {"clone", "add", "relu", "hardtanh"}


def _lookup_s(points: Sequence[SweepPoint], fit: KindFit, flops: int, size: int, name: str,
              reduction: int) -> float | None:
    if not points:
        return None
    if fit.flops_per_s is not None and flops > 0:
        # The 3 nearest sweep points in (log FLOPs, log reduction, log bytes):
        # bytes tell a weight-bound GEMV from a GEMM of the same FLOPs. Each
        # scales its variable time to this op's FLOPs above the kind's fixed cost.
        def distance(p: SweepPoint) -> float:
            return ((math.log10(max(p.flops, 1)) - math.log10(flops)) ** 2
                    + (math.log10(max(p.reduction, 1)) - math.log10(max(reduction, 1))) ** 2
                    + (math.log10(max(p.bytes, 1)) - math.log10(max(size, 1))) ** 2)

        near = sorted((p for p in points if p.flops > 0), key=distance)[:3]
        if not near:
            return None
        estimates = [fit.overhead_s + max(p.seconds - fit.overhead_s, 1e-9) * flops / p.flops for p in near]
        return math.exp(statistics.fmean(math.log(e) for e in estimates))
    same = [p for p in points if p.name == name]
    # An op the sweeps did not run is priced as a plain elementwise op.
    plain = [p for p in points if p.name in _PLAIN_ELEMENTWISE]
    pool = same if len(same) >= 2 else (plain or list(points))
    xs, ys = _by_log([(p.bytes, p.seconds) for p in pool])
    x = math.log(max(size, 1))
    if x >= xs[-1]:  # past the largest point: at its rate
        return math.exp(ys[-1]) * max(size, 1) / math.exp(xs[-1])
    return math.exp(_interpolate(xs, ys, x))


def predict_s(batch: BatchProfile, calibration: Calibration,
              weights: Mapping[str, float] | None = None) -> tuple[float, float, float, float]:
    """(total, compute-bound part, memory-bound part, fixed overheads) in
    seconds, with the calibration's live corrections; ``weights`` scale the
    terms (the benchmark tries fitted ones)."""
    return _totals(terms_s(batch, calibration), calibration, weights or {})


def split_s(batch: BatchProfile, calibration: Calibration) -> tuple[float, float]:
    """(fixed cost per call, variable cost) in seconds, the two parts that
    live feedback corrects separately (seedserve.profiler.feedback)."""
    _, compute, memory, overhead = predict_s(batch, calibration)
    return overhead, compute + memory


def _totals(terms: Mapping[str, float], calibration: Calibration,
            weights: Mapping[str, float]) -> tuple[float, float, float, float]:
    weighted = {name: value * weights.get(name, 1.0) for name, value in terms.items()}
    compute = sum(weighted[k] for k in _COMPUTE_TERMS) * calibration.live_scale
    memory = (weighted["memory"] + weighted["weights"]) * calibration.live_scale
    overhead = weighted["call"] + weighted["op_overhead"] + weighted["views"] + calibration.live_fixed_s
    return compute + memory + overhead, compute, memory, overhead


def predict(profile: ModelProfile, worker: WorkerType, calibration: Calibration, batch_size: int = 1) -> Prediction:
    at = profile.at(batch_size)
    terms = terms_s(at, calibration)
    total, compute, memory, overhead = _totals(terms, calibration, {})
    assumptions = ["one model call at a time (inputs decoded, outputs not yet encoded); FP32 weights"]
    if calibration.calibrated:
        assumptions.append(f"calibrated on {calibration.host} ({calibration.threads} threads) "
                           f"at {calibration.measured_at:%Y-%m-%d %H:%M} UTC")
    else:
        assumptions.append("uncalibrated: catalog peaks x default efficiency, default fixed costs")
    if calibration.live_models:
        assumptions.extend(_live_assumptions(terms, calibration, total))
    if batch_size not in {b.batch_size for b in profile.batches}:
        assumptions.append(f"batch {batch_size} scaled from a profiled batch size")
    if terms["weights"] > 0:
        assumptions.append(f"its weights ({at.weight_bytes / 2**20:.1f} MiB) do not stay in cache: "
                           "they are read from memory on every call")
    if any(b.uncounted_ops for b in profile.batches):
        assumptions.append("some ops have no FLOP formula and count as memory-bound")
    return Prediction(worker_type=worker.name, calibrated=calibration.calibrated, batch_size=batch_size,
                      threads=calibration.threads, latency_ms=total * 1e3, compute_ms=compute * 1e3,
                      memory_ms=memory * 1e3,
                      overhead_ms=overhead * 1e3, assumptions=assumptions)


def _live_assumptions(terms: Mapping[str, float], calibration: Calibration, total: float) -> list[str]:
    """What live feedback changed, and a warning when it moves the prediction past 2x."""
    said = [f"corrected by live traffic of {calibration.live_models} model(s) on this worker type: fixed cost "
            f"{calibration.live_fixed_s * 1e3:+.3f} ms per call, compute and memory x{calibration.live_scale:.2f}"]
    before = _totals(terms, calibration.model_copy(update={"live_scale": 1.0, "live_fixed_s": 0.0}), {})[0]
    factor = total / before if before > 0 else 1.0
    if not 0.5 <= factor <= 2.0:
        said.append(f"live correction moves this prediction x{factor:.2f} from the calibrated {before * 1e3:.3f} ms")
    return said


class Option(BaseModel):
    worker_type: str
    calibrated: bool
    replicas: int
    batch_size: int
    #: The torch threads of one call, as calibrated (replicas report theirs with their measurements).
    threads: int = 0
    #: The objective's percentile of the delay between query and response at peak_rps on ``replicas`` replicas.
    latency_ms: float
    #: Both percentiles end to end (path, queueing, batching, the model call), at peak_rps.
    p50_ms: float = math.inf
    p99_ms: float = math.inf
    #: The model call alone, one query (what ``predict`` gives at batch 1).
    call_ms: float = math.inf
    #: A query's path on the replica besides the call (QueryPath.path_s):
    #: as the type's replicas measured it, or the default.
    path_ms: float = 0.0
    throughput_rps_per_replica: float
    cost_per_hour: float
    meets: bool
    why_not: str | None


class Recommendation(BaseModel):
    objective: Objective
    choice: Option | None
    options: list[Option]
    reasoning: str


#: Replicas per type the recommendation considers at most, as a multiple of the fewest that keep up.
MAX_REPLICA_FACTOR = 8


def recommend(
    profile: ModelProfile, objective: Objective, catalog: Catalog, calibrations: Mapping[str, Calibration],
    *, policy: Policy | None = None, path: QueryPath | None = None, paths: Mapping[str, QueryPath] | None = None,
) -> Recommendation:
    """The cheapest worker type and replica count whose predicted delay
    between query and response (seedserve.profiler.queueing) at the
    objective's ``peak_rps`` meets its percentile target, for the replica's
    batch ``policy`` (default: seedserve's, batch 16 and no wait). A query's
    path on a type is ``paths``' for it (as its replicas measured it, see
    seedserve.profiler.feedback.live_paths), else ``path``, else the default."""
    paths = paths or {}
    options = [_option(profile, objective, worker,
                       calibrations.get(worker.name) or assumed_calibration(worker, catalog),
                       policy or Policy(), _path_on(worker.name, path, paths)) for worker in catalog.types]
    meeting = sorted((o for o in options if o.meets), key=lambda o: (o.cost_per_hour, o.latency_ms))
    target = f"{objective.percentile} <= {objective.latency_ms:g} ms at {objective.peak_rps:g} requests/s"
    if meeting:
        choice = meeting[0]
        reasoning = (f"{choice.worker_type}: {choice.replicas} replica(s) with batches of up to {choice.batch_size} "
                     f"meet {target} (predicted end to end: p50 {choice.p50_ms:.2f} ms, p99 {choice.p99_ms:.2f} ms; "
                     f"up to {choice.throughput_rps_per_replica:.0f} requests/s per replica) for "
                     f"${choice.cost_per_hour:.2f}/h, the cheapest of {len(meeting)} type(s) that meet it")
        return Recommendation(objective=objective, choice=choice, options=options, reasoning=reasoning)
    fastest = min(options, key=lambda o: o.latency_ms)
    reasoning = (f"no worker type meets {target}: the fastest, {fastest.worker_type}, is predicted at "
                 f"{fastest.latency_ms:.2f} ms ({fastest.why_not}); relax the target or shrink the model")
    return Recommendation(objective=objective, choice=None, options=options, reasoning=reasoning)


def _path_on(worker_type: str, path: QueryPath | None, paths: Mapping[str, QueryPath]) -> QueryPath:
    """``path`` (or the default) with the path per query measured on ``worker_type``, if any."""
    measured = paths.get(worker_type)
    base = path or QueryPath()
    return base if measured is None else dataclasses.replace(base, path_s=measured.path_s)


def _option(profile: ModelProfile, objective: Objective, worker: WorkerType, calibration: Calibration,
            policy: Policy, path: QueryPath) -> Option:
    need = profile.weight_bytes + profile.at(policy.batch_size).activation_bytes
    if need > worker.memory:
        return Option(worker_type=worker.name, calibrated=calibration.calibrated, replicas=0,
                      batch_size=policy.batch_size, latency_ms=math.inf, throughput_rps_per_replica=0.0,
                      cost_per_hour=math.inf, meets=False,
                      why_not=f"needs {need / 2**30:.1f} GiB, the type has {worker.memory / 2**30:.0f} GiB")
    call = call_times({b: predict_s(profile.at(b), calibration)[0] for b in {1, policy.batch_size}})
    per_replica = saturation_rps(call, path.path_s, policy)
    replicas, answer = _fewest_replicas(call, path, policy, objective, per_replica)
    latency = (answer.p99_s if objective.percentile == "p99" else answer.p50_s) * 1e3
    meets = latency <= objective.latency_ms
    return Option(worker_type=worker.name, calibrated=calibration.calibrated, replicas=replicas,
                  batch_size=policy.at(call, 0.0).batch_size, threads=calibration.threads, latency_ms=latency,
                  p50_ms=answer.p50_s * 1e3, p99_ms=answer.p99_s * 1e3, call_ms=call(1) * 1e3,
                  path_ms=path.path_s * 1e3,
                  throughput_rps_per_replica=per_replica, cost_per_hour=replicas * worker.price_per_hour,
                  meets=meets, why_not=None if meets else
                  f"{objective.percentile} {latency:.2f} ms > {objective.latency_ms:g} ms even with {replicas} "
                  f"replica(s) (the model call alone: {call(1) * 1e3:.2f} ms)")


def _fewest_replicas(call: Callable[[int], float], path: QueryPath, policy: Policy, objective: Objective,
                     per_replica: float) -> tuple[int, Delay]:
    """The fewest replicas (up to MAX_REPLICA_FACTOR times those that keep up)
    whose predicted percentile at peak_rps meets the target, with that
    prediction; else the most considered, with theirs. Each replica is
    simulated at an even share of the rate (a conservative stand-in for
    Serve's router, which evens queues out)."""
    def at(n: int) -> Delay:
        return path.delay(call, objective.peak_rps / n, policy)

    def ok(answer: Delay) -> bool:
        value = answer.p99_s if objective.percentile == "p99" else answer.p50_s
        return value * 1e3 <= objective.latency_ms

    low = max(1, math.ceil(objective.peak_rps / per_replica)) if per_replica > 0 else 1
    answer = at(low)
    if ok(answer):
        return low, answer
    high, most = low, low * MAX_REPLICA_FACTOR
    while high < most:  # double until it meets, then halve the gap
        high = min(2 * high, most)
        answer = at(high)
        if ok(answer):
            break
    else:
        return high, answer
    while high - low > 1:
        middle = (low + high) // 2
        tried = at(middle)
        if ok(tried):
            high, answer = middle, tried
        else:
            low = middle
    return high, answer
