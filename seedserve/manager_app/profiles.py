"""The profiler in the API: a version's profile with its predicted latency per
worker type and the worker recommendation, and ``POST /api/profile``, which
profiles an artifact without registering it."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from seedserve.codecs import Manifest
from seedserve.manager_app.state import require_admin
from seedserve.profiler.calibrate import Calibration
from seedserve.profiler.catalog import load_catalog
from seedserve.profiler.predict import assumed_calibration, predict, recommend
from seedserve.profiler.profile import ModelProfile
from seedserve.registry import ModelStore

__all__ = ["insight", "routes"]

#: Batch sizes the API predicts for.
PREDICTED_BATCHES = (1, 8)


async def insight(store: ModelStore, manifest: Manifest, profile: dict[str, Any] | None) -> dict[str, Any]:
    """The profile as the API shows it (ops summarized by kind), the predicted
    latency on every worker type, and the recommendation if the manifest has an objective."""
    if not profile or "error" in profile:
        return {"profile": profile, "predictions": [], "recommendation": None}
    parsed = ModelProfile.model_validate(profile)
    catalog = load_catalog()
    stored = await store.calibrations()
    calibrations = {}
    for worker in catalog.types:
        try:
            calibrations[worker.name] = Calibration.model_validate(stored[worker.name])
        except (KeyError, ValidationError):
            calibrations[worker.name] = assumed_calibration(worker, catalog)
    predictions = [predict(parsed, worker, calibrations[worker.name], batch).model_dump(mode="json")
                   for worker in catalog.types for batch in PREDICTED_BATCHES]
    recommendation = None
    if manifest.objective is not None:
        recommendation = recommend(parsed, manifest.objective, catalog, calibrations).model_dump(mode="json")
    shown = parsed.model_dump(mode="json")
    for batch in shown["batches"]:
        batch.pop("ops")
    return {"profile": shown, "predictions": predictions, "recommendation": recommendation}


async def profile_artifact(request: Request) -> Response:
    """Profile an artifact (multipart: ``manifest``, ``artifact``, ``format``) and store nothing."""
    from seedserve.manager_app.models import probed_upload

    state = require_admin(request)
    async with probed_upload(request, state) as probed:
        pass  # nothing is stored: the temporary file goes with the block
    return JSONResponse({"name": probed.manifest.name, "outputs": probed.outputs,
                         **await insight(state.store, probed.manifest, probed.profile)})


routes = [Route("/api/profile", profile_artifact, methods=["POST"])]
