"""The profiler through the manager's API: registration stores the profile,
the model shows predicted latency per worker type and the recommendation,
stored calibrations replace catalog assumptions, live latency corrects the
fixed cost per call apart from the compute, and POST /api/profile stores
nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import torch

from seedserve.client import ManagerClient
from seedserve.profiler.catalog import load_catalog
from tests.helpers import MLP_MANIFEST, make_mlp, save_torchscript
from tests.manager.conftest import Manager

OBJECTIVE = {"latency_ms": 50, "percentile": "p99", "peak_rps": 20}


def test_a_registered_model_shows_its_flops_predictions_and_recommendation(manager: Manager, tmp_path: Path) -> None:
    artifact = save_torchscript(make_mlp(), tmp_path / "m.pt")
    with ManagerClient(manager.url, manager.token) as client:
        client.register(artifact, {**MLP_MANIFEST, "name": "profiled", "objective": OBJECTIVE})
        shown = client.get_model("profiled")
    assert shown.profile is not None
    batch = {b["batch_size"]: b for b in shown.profile["batches"]}
    assert batch[1]["flops"] == 2 * (16 * 64 + 64 * 4)
    assert batch[8]["flops"] == 8 * batch[1]["flops"]
    assert batch[1]["ptflops_macs"] == 16 * 64 + 64 + 64 * 4 + 4  # ptflops counts the bias additions too
    assert shown.profile["parameters"] == 16 * 64 + 64 + 64 * 4 + 4
    types = {w.name for w in load_catalog().types}
    assert {p["worker_type"] for p in shown.predictions} == types
    assert all(p["latency_ms"] > 0 and not p["calibrated"] for p in shown.predictions)
    recommendation = shown.recommendation
    assert recommendation is not None
    assert recommendation["choice"]["worker_type"] == "cpu-local" and "cheapest" in recommendation["reasoning"]


def test_a_stored_calibration_replaces_the_catalog_assumption(manager: Manager, tmp_path: Path) -> None:
    fit = {"overhead_s": 1e-5, "flops_per_s": 1e10, "bytes_per_s": 1e10}
    manager.db.calibrations.replace_one({"_id": "cpu-local"}, {
        "_id": "cpu-local", "worker_type": "cpu-local", "calibrated": True, "host": "test", "threads": 1,
        "measured_at": datetime.now(UTC).isoformat(), "call_overhead_s": 1e-4, "view_overhead_s": 1e-6,
        "kinds": {kind: {**fit, "flops_per_s": None} if kind == "memory" else fit
                  for kind in ("gemm", "conv", "dwconv", "rnn", "memory")},
    }, upsert=True)
    try:
        artifact = save_torchscript(make_mlp(), tmp_path / "m.pt")
        with ManagerClient(manager.url, manager.token) as client:
            client.register(artifact, {**MLP_MANIFEST, "name": "calibrated"})
            predictions = client.get_model("calibrated").predictions
    finally:
        manager.db.calibrations.delete_one({"_id": "cpu-local"})
    local = [p for p in predictions if p["worker_type"] == "cpu-local"]
    assert local and all(p["calibrated"] for p in local)
    one = next(p for p in local if p["batch_size"] == 1)
    assert one["overhead_ms"] >= 0.1  # the stored call overhead, not the catalog default (0.05 ms)


def test_profiling_an_artifact_stores_nothing(manager: Manager, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 16 * 16, 2)).eval()
    artifact = tmp_path / "cnn.pt"
    torch.jit.script(cnn).save(str(artifact))
    manifest = {"name": "just-looking", "inputs": [{"name": "x", "shape": [-1, 3, 16, 16]}], "outputs": [{"name": "y"}],
                "objective": {"latency_ms": 0.000001}}
    before = {name: len(list(manager.db[name].find()))  # the embedded server has no count_documents
              for name in ("models", "versions")}
    response = httpx.post(manager.url + "/api/profile", headers={"Authorization": f"Bearer {manager.token}"},
                          data={"manifest": json.dumps(manifest)},
                          files={"artifact": ("cnn.pt", artifact.read_bytes())}, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    flops = 2 * (8 * 16 * 16 * 27 + 8 * 16 * 16 * 2)
    assert {b["batch_size"]: b["flops"] for b in body["profile"]["batches"]} == {1: flops, 8: 8 * flops}
    assert body["recommendation"]["choice"] is None
    assert body["recommendation"]["reasoning"].startswith("no worker type meets")
    assert {name: len(list(manager.db[name].find())) for name in ("models", "versions")} == before
    unauthenticated = httpx.post(manager.url + "/api/profile", data={"manifest": json.dumps(manifest)},
                                 files={"artifact": ("cnn.pt", artifact.read_bytes())})
    assert unauthenticated.status_code == 401


class _Heavy(torch.nn.Module):
    """Compute-bound: two 3x3 convolutions of 64 channels over 128 x 128."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.Conv2d(64, 64, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x).relu()).mean([2, 3])


def test_live_latency_of_a_tiny_model_moves_the_fixed_cost_not_a_compute_bound_model(
        manager: Manager, tmp_path: Path) -> None:
    """Feedback, term by term (seedserve.profiler.feedback): replicas measured
    a tiny MLP at 1 ms a call, far above its prediction. Its own fixed cost
    per call moves at least half-way to the measurement; a compute-bound
    model's prediction on the same type stays within 10 %."""
    from seedserve.registry.documents import version_id

    heavy = tmp_path / "heavy.pt"
    torch.jit.script(_Heavy().eval()).save(str(heavy))
    heavy_manifest = {"name": "fb-heavy", "inputs": [{"name": "x", "shape": [-1, 3, 128, 128]}],
                      "outputs": [{"name": "y"}]}
    with ManagerClient(manager.url, manager.token) as client:
        client.register(save_torchscript(make_mlp(), tmp_path / "tiny.pt"), {**MLP_MANIFEST, "name": "fb-tiny"})
        client.register(heavy, heavy_manifest)

        def local(name: str, batch: int = 1) -> dict:
            return next(p for p in client.get_model(name).predictions
                        if p["worker_type"] == "cpu-local" and p["batch_size"] == batch)

        before = {name: local(name) for name in ("fb-tiny", "fb-heavy")}
        assert before["fb-heavy"]["latency_ms"] > 10 and before["fb-tiny"]["latency_ms"] < 0.5
        measured = {"cpu-local": {"p50_ms": 1.0, "p99_ms": 3.0, "mean_items": 1.0, "calls": 500.0}}
        manager.db.versions.update_one({"_id": version_id("fb-tiny", 1)}, {"$set": {"measured": measured}})
        try:
            tiny, heavy_after = local("fb-tiny"), local("fb-heavy")
        finally:
            manager.db.versions.update_one({"_id": version_id("fb-tiny", 1)}, {"$set": {"measured": {}}})
    gap = 1.0 - before["fb-tiny"]["latency_ms"]
    assert tiny["overhead_ms"] - before["fb-tiny"]["overhead_ms"] >= 0.5 * gap
    assert tiny["measured_p50_ms"] == pytest.approx(1.0)
    assert any("corrected by live traffic of 1 model(s)" in a for a in tiny["assumptions"])
    assert any(a.startswith("live correction moves this prediction") for a in tiny["assumptions"])
    assert heavy_after["latency_ms"] == pytest.approx(before["fb-heavy"]["latency_ms"], rel=0.10)
