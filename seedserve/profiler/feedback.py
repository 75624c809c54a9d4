"""Latency measured on live traffic, fed back into the predictions.

Replicas report each version's median call latency per worker type (and the
mean batch it ran at). For every worker type, the ratio measured / predicted
over the models measured there becomes a scale on that type's calibration:
the median of the log ratios, shrunk toward 1 when few models are measured
(``n / (n + 1)`` of the way: one model moves predictions half-way in log
terms). A model's own measurement does not scale its own predictions (they
are shown side by side, so they must stay independent); the others' do.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from seedserve.profiler.calibrate import Calibration
from seedserve.profiler.predict import predict_s
from seedserve.profiler.profile import ModelProfile

__all__ = ["MAX_SCALE", "live_scale", "with_live_scales"]

#: The scale stays within [1 / MAX_SCALE, MAX_SCALE]: a replica on an
#: overloaded node must not move every prediction by orders of magnitude.
MAX_SCALE = 10.0


def live_scale(ratios: Iterable[float]) -> tuple[float, int]:
    """(scale, models) from measured / predicted ratios; (1.0, 0) for none."""
    logs = [math.log(r) for r in ratios if r > 0 and math.isfinite(r)]
    if not logs:
        return 1.0, 0
    shrunk = statistics.median(logs) * len(logs) / (len(logs) + 1)
    return min(MAX_SCALE, max(1 / MAX_SCALE, math.exp(shrunk))), len(logs)


def with_live_scales(calibrations: Mapping[str, Calibration], versions: Iterable[Mapping[str, Any]],
                     exclude: str | None = None) -> dict[str, Calibration]:
    """``calibrations`` with each worker type's live scale, from the
    measurements stored with ``versions`` (all models but ``exclude``)."""
    ratios: dict[str, list[float]] = {}
    for version in versions:
        if version.get("name") == exclude or not version.get("measured") or not version.get("profile"):
            continue
        try:
            profile = ModelProfile.model_validate(version["profile"])
        except ValidationError:
            continue  # a profile that failed or an older format
        for worker_type, seen in version["measured"].items():
            calibration = calibrations.get(worker_type)
            p50_ms = seen.get("p50_ms") if isinstance(seen, Mapping) else None
            if calibration is None or not p50_ms:
                continue
            batch = max(1, round(float(seen.get("mean_items") or 1)))
            predicted_s = predict_s(profile.at(batch), calibration.model_copy(update={"live_scale": 1.0}))[0]
            ratios.setdefault(worker_type, []).append(p50_ms / 1e3 / predicted_s)
    scaled = dict(calibrations)
    for worker_type, values in ratios.items():
        scale, models = live_scale(values)
        scaled[worker_type] = calibrations[worker_type].model_copy(update={"live_scale": scale, "live_models": models})
    return scaled
