"""Latency measured on live traffic, fed back into the predictions, term by term.

A prediction is the time of one model call on the replica's thread setting:
what ``ModelServer`` times around ``run_model`` (inputs already decoded,
outputs not yet encoded). Replicas report, per version and worker type, the
median of that time over their recent calls, the mean items per call and
their torch threads. The prediction has two parts that go wrong for
different reasons:

* a **fixed cost per call** (the call itself, per-op dispatch, views): on a
  live replica it also holds what the calibration's bare TorchScript call
  does not see (the replica's inference mode, argument conversion, output
  copies, a busy node's scheduling). It is corrected by adding a constant
  per worker type, ``live_fixed_s``;
* the **variable cost** (compute, memory, streamed weights): its rates were
  measured on the node by the calibration, so it only moves by a bounded
  scale, ``live_scale``, held close to 1 unless compute-bound models show
  otherwise.

Both are fitted together, in log terms, over every measured model on the
type: a sub-millisecond model's measurement moves the fixed cost, where it
belongs, and barely moves a compute-bound model. The fixed correction is
shrunk toward 0 by ``n / (n + 0.5)`` of the way (one model: two thirds), the
scale toward 1 by a prior of a few models' weight; which of the two explains
a discrepancy is chosen by priors on both (a scale near 1 on a calibrated
type, a fixed cost of at most a few milliseconds). A measurement taken at
another torch thread count than the calibration's is not the same quantity
and is left out.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from seedserve.profiler.calibrate import Calibration
from seedserve.profiler.predict import split_s
from seedserve.profiler.profile import ModelProfile
from seedserve.profiler.queueing import QueryPath

__all__ = ["MAX_SCALE", "MIN_CALLS", "LiveFit", "Sample", "fit_live", "live_paths", "samples", "with_live_feedback"]

#: The variable terms' scale stays within [1 / MAX_SCALE, MAX_SCALE].
MAX_SCALE = 10.0
#: A measurement of fewer calls (a handful of cold first queries) is not used.
MIN_CALLS = 20
#: The prior on log(scale): its weight in models, and its spread on a
#: calibrated type (rates measured on the node) and an uncalibrated one.
_PRIOR_MODELS = 2.0
_SPREAD = {True: math.log(1.5), False: math.log(4.0)}
#: The spread of a measurement's log error around the truth (noise of a
#: median on a shared node), against which the priors are weighed.
_NOISE = 0.15
#: The spread of the fixed correction, used only to choose which of the two
#: explains a discrepancy: per-call costs of a replica's path are well under
#: a few milliseconds, so a compute-bound model that runs 40 % slow is a
#: scale, and a 50 us model that takes 1 ms is a fixed cost.
_FIXED_SPREAD_S = 1e-3
_SCALES = [math.exp(math.log(MAX_SCALE) * i / 20) for i in range(-20, 21)]


@dataclass(frozen=True)
class Sample:
    """One measured model: its predicted fixed and variable seconds per call
    (uncorrected) and the measured seconds."""

    fixed_s: float
    variable_s: float
    measured_s: float


@dataclass(frozen=True)
class LiveFit:
    fixed_s: float = 0.0
    scale: float = 1.0
    models: int = 0


def _error(data: Sequence[Sample], fixed: float, scale: float) -> float:
    return sum(math.log((s.fixed_s + fixed + scale * s.variable_s) / s.measured_s) ** 2 for s in data)


def _best_fixed(data: Sequence[Sample], scale: float) -> float:
    """The constant that, added to every sample's fixed cost at ``scale``,
    minimizes the squared log errors: the best of a grid (from what keeps
    every prediction positive to the largest measurement), refined by a
    golden-section search between its neighbours."""
    low = -min(s.fixed_s for s in data) * 0.99
    high = max(s.measured_s for s in data)
    grid = sorted({low * f for f in (1.0, 0.5, 0.2)} | {0.0} | {high * 10 ** (-i / 8) for i in range(49)})
    errors = [_error(data, c, scale) for c in grid]
    i = min(range(len(grid)), key=errors.__getitem__)
    a, b = grid[max(0, i - 1)], grid[min(len(grid) - 1, i + 1)]
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(40):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if _error(data, c, scale) < _error(data, d, scale):
            b = d
        else:
            a = c
    return (a + b) / 2


def fit_live(data: Iterable[Sample], calibrated: bool = True) -> LiveFit:
    """The fixed-cost constant and variable scale that best explain ``data``
    (see the module's docstring); no correction for no data."""
    usable = [s for s in data if s.measured_s > 0 and math.isfinite(s.measured_s) and s.fixed_s + s.variable_s > 0]
    if not usable:
        return LiveFit()
    spread = _SPREAD[calibrated]
    best: tuple[float, float, float] | None = None
    for scale in _SCALES:
        fixed = _best_fixed(usable, scale)
        error = (_error(usable, fixed, scale) / _NOISE ** 2 + _PRIOR_MODELS * (math.log(scale) / spread) ** 2
                 + _PRIOR_MODELS * (fixed / _FIXED_SPREAD_S) ** 2)
        if best is None or error < best[0]:
            best = (error, fixed, scale)
    assert best is not None
    n = len(usable)
    # The fixed constant refitted at the chosen scale is shrunk toward 0.
    return LiveFit(fixed_s=best[1] * n / (n + 0.5), scale=best[2], models=n)


def samples(calibration: Calibration, versions: Iterable[Mapping[str, Any]], worker_type: str) -> list[Sample]:
    """The usable measurements on ``worker_type`` stored with ``versions``:
    enough calls, at the calibration's thread count when both are known,
    from a replica that ran one call at a time."""
    found = []
    for version in versions:
        seen = (version.get("measured") or {}).get(worker_type)
        if not isinstance(seen, Mapping) or not seen.get("p50_ms") or not version.get("profile"):
            continue
        if float(seen.get("calls") or 0) < MIN_CALLS:
            continue
        threads = seen.get("threads")
        if threads and calibration.threads and int(threads) != calibration.threads:
            continue
        if float(seen.get("flights") or 1) > 1:  # calls at once contend: none is one call's time alone
            continue
        try:
            profile = ModelProfile.model_validate(version["profile"])
        except ValidationError:
            continue  # a profile that failed or an older format
        batch = max(1, round(float(seen.get("mean_items") or 1)))
        fixed_s, variable_s = split_s(profile.at(batch), calibration.model_copy(update={
            "live_scale": 1.0, "live_fixed_s": 0.0}))
        found.append(Sample(fixed_s, variable_s, float(seen["p50_ms"]) / 1e3))
    return found


def with_live_feedback(calibrations: Mapping[str, Calibration],
                       versions: Iterable[Mapping[str, Any]]) -> dict[str, Calibration]:
    """``calibrations`` with each worker type's live correction, fitted on
    the measurements stored with ``versions``."""
    versions = list(versions)
    corrected = dict(calibrations)
    for worker_type, calibration in calibrations.items():
        fit = fit_live(samples(calibration, versions, worker_type), calibration.calibrated)
        if fit.models:
            corrected[worker_type] = calibration.model_copy(update={
                "live_fixed_s": fit.fixed_s, "live_scale": fit.scale, "live_models": fit.models})
    return corrected


def live_paths(versions: Iterable[Mapping[str, Any]], own: Mapping[str, Any] | None = None) -> dict[str, QueryPath]:
    """Per worker type, the per-query path (QueryPath.path_s) its replicas
    measured (the ``path_ms`` of their reports, see
    seedserve.deployments._metrics.PathCost): the model's ``own``
    measurement on that type if it has one, else the median over the
    ``versions`` measured there (a path depends on the inputs' decode, so a
    model's own is preferred). A type nobody measured is left out: the
    default QueryPath stands for it."""
    seen: dict[str, list[float]] = {}
    for version in versions:
        for worker_type, path_ms in _paths_ms(version.get("measured")):
            seen.setdefault(worker_type, []).append(path_ms)
    paths = {worker_type: QueryPath(path_s=statistics.median(values) / 1e3) for worker_type, values in seen.items()}
    paths.update((worker_type, QueryPath(path_s=path_ms / 1e3)) for worker_type, path_ms in _paths_ms(own))
    return paths


def _paths_ms(measured: Mapping[str, Any] | None) -> Iterator[tuple[str, float]]:
    """(worker type, path_ms) of each report in a version's ``measured`` map that has one."""
    for worker_type, stats in (measured or {}).items():
        if isinstance(stats, Mapping) and isinstance(stats.get("path_ms"), int | float):
            yield worker_type, float(stats["path_ms"])
