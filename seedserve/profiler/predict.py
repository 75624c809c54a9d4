"""Latency prediction per worker type and batch size, and the worker recommendation.

The latency model is a calibrated roofline: a fixed cost per call, and per op
a fixed cost plus the larger of its compute time (FLOPs at the rate its kind
achieves) and its memory time (bytes at the achieved bandwidth). Worker
types with a calibration use it; others use the catalog's peaks times a
default efficiency and are marked uncalibrated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from pydantic import BaseModel

from seedserve.codecs.schema import Objective
from seedserve.profiler.calibrate import Calibration, KindFit
from seedserve.profiler.catalog import Catalog, WorkerType
from seedserve.profiler.profile import BatchProfile, ModelProfile
from seedserve.profiler.trace import GEMM, KINDS, MEMORY, VIEW

__all__ = ["Objective", "Prediction", "Recommendation", "assumed_calibration", "predict_s", "predict", "recommend"]

#: p99 / p50 of a replica's latency when nothing is measured yet (queueing
#: and scheduler noise on a shared node); replaced by the measured ratio once traffic flows.
DEFAULT_P99_OVER_P50 = 1.5
BATCH_SIZES = (1, 2, 4, 8, 16, 32)


class Prediction(BaseModel):
    worker_type: str
    calibrated: bool
    batch_size: int
    latency_ms: float
    compute_ms: float
    memory_ms: float
    overhead_ms: float
    assumptions: list[str]


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


def predict_s(batch: BatchProfile, calibration: Calibration) -> tuple[float, float, float, float]:
    """(total, compute-bound part, memory-bound part, fixed overheads) in seconds."""
    compute = memory = overhead = 0.0
    for kind, flops, size in batch.ops:
        fit = calibration.kinds.get(kind) or calibration.kinds[GEMM if flops else MEMORY]
        overhead += fit.overhead_s
        flop_s = flops / fit.flops_per_s if fit.flops_per_s and flops else 0.0
        byte_s = size / fit.bytes_per_s
        if flop_s >= byte_s:
            compute += flop_s
        else:
            memory += byte_s
    overhead += calibration.call_overhead_s + batch.views * calibration.view_overhead_s
    return compute + memory + overhead, compute, memory, overhead


def predict(profile: ModelProfile, worker: WorkerType, calibration: Calibration, batch_size: int = 1) -> Prediction:
    total, compute, memory, overhead = predict_s(profile.at(batch_size), calibration)
    assumptions = ["one replica runs one call at a time; FP32 weights"]
    if calibration.calibrated:
        assumptions.append(f"calibrated on {calibration.host} ({calibration.threads} threads) "
                           f"at {calibration.measured_at:%Y-%m-%d %H:%M} UTC")
    else:
        assumptions.append("uncalibrated: catalog peaks x default efficiency, default fixed costs")
    if batch_size not in {b.batch_size for b in profile.batches}:
        assumptions.append(f"batch {batch_size} scaled from a profiled batch size")
    if any(b.uncounted_ops for b in profile.batches):
        assumptions.append("some ops have no FLOP formula and count as memory-bound")
    return Prediction(worker_type=worker.name, calibrated=calibration.calibrated, batch_size=batch_size,
                      latency_ms=total * 1e3, compute_ms=compute * 1e3, memory_ms=memory * 1e3,
                      overhead_ms=overhead * 1e3, assumptions=assumptions)


class Option(BaseModel):
    worker_type: str
    calibrated: bool
    replicas: int
    batch_size: int
    latency_ms: float
    throughput_rps_per_replica: float
    cost_per_hour: float
    meets: bool
    why_not: str | None


class Recommendation(BaseModel):
    objective: Objective
    choice: Option | None
    options: list[Option]
    reasoning: str


def recommend(
    profile: ModelProfile, objective: Objective, catalog: Catalog, calibrations: Mapping[str, Calibration],
    *, p99_over_p50: float = DEFAULT_P99_OVER_P50, batch_sizes: Sequence[int] = BATCH_SIZES,
) -> Recommendation:
    """The cheapest worker type and replica count that meet the objective."""
    options = [_option(profile, objective, worker, calibrations.get(worker.name) or assumed_calibration(worker, catalog),
                       p99_over_p50, batch_sizes) for worker in catalog.types]
    meeting = sorted((o for o in options if o.meets), key=lambda o: (o.cost_per_hour, o.latency_ms))
    target = f"{objective.percentile} <= {objective.latency_ms:g} ms at {objective.peak_rps:g} requests/s"
    if meeting:
        choice = meeting[0]
        reasoning = (f"{choice.worker_type}: {choice.replicas} replica(s) at batch {choice.batch_size} meet {target} "
                     f"(predicted {objective.percentile} {choice.latency_ms:.2f} ms, "
                     f"{choice.throughput_rps_per_replica:.0f} requests/s per replica) for "
                     f"${choice.cost_per_hour:.2f}/h, the cheapest of {len(meeting)} type(s) that meet it")
        return Recommendation(objective=objective, choice=choice, options=options, reasoning=reasoning)
    fastest = min(options, key=lambda o: o.latency_ms)
    reasoning = (f"no worker type meets {target}: the fastest, {fastest.worker_type}, is predicted at "
                 f"{fastest.latency_ms:.2f} ms ({fastest.why_not}); relax the target or shrink the model")
    return Recommendation(objective=objective, choice=None, options=options, reasoning=reasoning)


def _option(profile: ModelProfile, objective: Objective, worker: WorkerType, calibration: Calibration,
            p99_over_p50: float, batch_sizes: Sequence[int]) -> Option:
    factor = p99_over_p50 if objective.percentile == "p99" else 1.0
    best: Option | None = None
    for batch in batch_sizes:
        at = profile.at(batch)
        latency = predict_s(at, calibration)[0] * factor * 1e3
        fits = profile.weight_bytes + at.activation_bytes <= worker.memory
        if not fits or (batch > 1 and latency > objective.latency_ms):
            continue
        throughput = batch / (latency / factor / 1e3)
        replicas = max(1, math.ceil(objective.peak_rps / throughput))
        option = Option(worker_type=worker.name, calibrated=calibration.calibrated, replicas=replicas,
                        batch_size=batch, latency_ms=latency, throughput_rps_per_replica=throughput,
                        cost_per_hour=replicas * worker.price_per_hour, meets=latency <= objective.latency_ms,
                        why_not=None if latency <= objective.latency_ms else
                        f"{objective.percentile} {latency:.2f} ms > {objective.latency_ms:g} ms even alone")
        if best is None or (option.meets, -option.cost_per_hour, -option.latency_ms) > (
                best.meets, -best.cost_per_hour, -best.latency_ms):
            best = option
    if best is None:
        need = profile.weight_bytes + profile.at(1).activation_bytes
        return Option(worker_type=worker.name, calibrated=calibration.calibrated, replicas=0, batch_size=1,
                      latency_ms=math.inf, throughput_rps_per_replica=0.0, cost_per_hour=math.inf, meets=False,
                      why_not=f"needs {need / 2**30:.1f} GiB, the type has {worker.memory / 2**30:.0f} GiB")
    return best
