"""The profiler in the API: a version's profile with its predicted latency per
worker type and the worker recommendation, and ``POST /api/profile``, which
profiles an artifact without registering it."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request

from seedserve import api
from seedserve.codecs import Manifest
from seedserve.manager_app._upload import probed_upload
from seedserve.manager_app.auth import caller
from seedserve.profiler.calibrate import Calibration
from seedserve.profiler.catalog import load_catalog
from seedserve.profiler.feedback import live_paths, with_live_feedback
from seedserve.profiler.predict import assumed_calibration, predict, recommend
from seedserve.profiler.profile import ModelProfile
from seedserve.profiler.queueing import policy_of
from seedserve.registry import ModelStore

__all__ = ["insight", "profile_artifact"]

#: Batch sizes the API predicts for.
PREDICTED_BATCHES = (1, 8)


async def insight(store: ModelStore, manifest: Manifest, profile: dict[str, Any] | None,
                  measured: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The profile as the API shows it (ops summarized by kind), the predicted
    latency on every worker type (with what replicas measured there, once
    traffic has flowed), and the recommendation if the manifest has an
    objective. Predictions are corrected, term by term, by what the models
    measured on each worker type (seedserve.profiler.feedback)."""
    measured = measured or {}
    if not profile or "error" in profile:
        return {"profile": profile, "predictions": [], "recommendation": None, "measured": measured}
    parsed = ModelProfile.model_validate(profile)
    catalog = load_catalog()
    stored = await store.calibrations()
    calibrations = {}
    for worker in catalog.types:
        try:
            calibrations[worker.name] = Calibration.model_validate(stored[worker.name])
        except (KeyError, ValidationError):
            calibrations[worker.name] = assumed_calibration(worker, catalog)
    versions = await store.versions()
    calibrations = with_live_feedback(calibrations, versions)
    predictions = []
    for worker in catalog.types:
        seen = measured.get(worker.name)
        for batch in PREDICTED_BATCHES:
            prediction = predict(parsed, worker, calibrations[worker.name], batch)
            if seen is not None and batch == 1:  # beside the batch-1 prediction, with the batch size it ran at
                prediction.measured_p50_ms = seen.get("p50_ms")
                prediction.measured_mean_items = seen.get("mean_items")
            predictions.append(prediction.model_dump(mode="json"))
    recommendation = None
    if manifest.objective is not None:
        chosen = recommend(parsed, manifest.objective, catalog, calibrations, policy=policy_of(manifest.batching),
                           paths=live_paths(versions, measured))
        # JSON's own way: a type the model cannot fit on has infinite latency, written as null.
        recommendation = json.loads(chosen.model_dump_json())
    shown = parsed.model_dump(mode="json")
    for batch in shown["batches"]:
        batch.pop("ops")
    return {"profile": shown, "predictions": predictions, "recommendation": recommendation, "measured": measured}


async def profile_artifact(request: Request) -> api.Profiled:
    """Profile an artifact (multipart: ``manifest``, ``artifact``, ``format``) and store nothing."""
    state, who = await caller(request)
    async with probed_upload(request, state, who) as probed:
        pass  # nothing is stored: the temporary file goes with the block
    return api.Profiled(name=probed.manifest.name, outputs=probed.outputs,
                        **await insight(state.store, probed.manifest, probed.profile))
