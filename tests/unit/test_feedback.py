"""Live feedback corrects each term of a prediction on its own: a
sub-millisecond model's measurement moves the fixed cost per call, not a
compute-bound model's prediction; and the recommendation picks by price
among the types whose predicted p99 meets the target."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from seedserve.codecs.schema import Objective
from seedserve.profiler.calibrate import Calibration
from seedserve.profiler.catalog import Catalog, load_catalog
from seedserve.profiler.feedback import MIN_CALLS, Sample, fit_live, live_paths, with_live_feedback
from seedserve.profiler.predict import assumed_calibration, predict, recommend
from seedserve.profiler.profile import ModelProfile, profile_model


def _profile(module: nn.Module, shape: tuple[int, ...]) -> ModelProfile:
    model = torch.jit.script(module.eval())
    return profile_model(model, lambda n: (torch.randn(n, *shape),), lambda m, args: m(*args), (1, 2))


def _calibration(threads: int = 1) -> Calibration:
    catalog = load_catalog()
    # The catalog's roofline stands in for a measured calibration: the
    # feedback arithmetic is the same, and a real sweep takes a minute.
    return assumed_calibration(catalog.get("cpu-local"), catalog).model_copy(
        update={"calibrated": True, "threads": threads})


def _version(name: str, profile: ModelProfile, p50_ms: float, calls: int = 500, threads: int = 1) -> dict[str, Any]:
    return {"name": name, "profile": profile.model_dump(mode="json"),
            "measured": {"cpu-local": {"p50_ms": p50_ms, "mean_items": 1.0, "calls": float(calls),
                                       "threads": float(threads)}}}


TINY = (nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4)), (16,))
HEAVY = (nn.Sequential(*(layer for _ in range(3) for layer in (nn.Linear(2048, 2048), nn.ReLU()))), (64, 2048))


def test_a_sub_millisecond_model_moves_the_fixed_cost_and_leaves_a_compute_bound_model_alone() -> None:
    calibration = _calibration()
    worker = load_catalog().get("cpu-local")
    tiny, heavy = _profile(*TINY), _profile(*HEAVY)
    tiny_before, heavy_before = predict(tiny, worker, calibration), predict(heavy, worker, calibration)
    assert tiny_before.latency_ms < 0.2 and heavy_before.latency_ms > 20  # what the two cases stand for
    measured_ms = 0.96  # what a replica reported for the example MLP (issue 18)
    corrected = with_live_feedback({"cpu-local": calibration}, [_version("mlp", tiny, measured_ms)])["cpu-local"]
    tiny_after, heavy_after = predict(tiny, worker, corrected), predict(heavy, worker, corrected)
    # The tiny model's own fixed-cost term moves at least half-way to what it measured ...
    gap = measured_ms - tiny_before.latency_ms
    assert tiny_after.overhead_ms - tiny_before.overhead_ms >= 0.5 * gap
    assert tiny_after.compute_ms == pytest.approx(tiny_before.compute_ms, rel=0.15)
    # ... and the compute-bound model's prediction stays within 10 %.
    assert heavy_after.latency_ms == pytest.approx(heavy_before.latency_ms, rel=0.10)
    # A correction that moves a prediction past 2x says so.
    assert any(a.startswith("live correction moves this prediction") for a in tiny_after.assumptions)
    assert not any(a.startswith("live correction moves") for a in heavy_after.assumptions)
    assert any("fixed cost +" in a for a in heavy_after.assumptions)


def test_compute_bound_models_that_run_slower_move_the_scale() -> None:
    calibration = _calibration()
    worker = load_catalog().get("cpu-local")
    heavy = _profile(*HEAVY)
    before = predict(heavy, worker, calibration).latency_ms
    corrected = with_live_feedback({"cpu-local": calibration},
                                   [_version(f"m{i}", heavy, 1.4 * before) for i in range(4)])["cpu-local"]
    after = predict(heavy, worker, corrected).latency_ms
    assert before * 1.2 < after < before * 1.45
    assert abs(corrected.live_fixed_s) < 0.05 * before / 1e3


def test_the_fit_recovers_a_fixed_cost_and_a_scale_from_models_of_both_kinds() -> None:
    fixed, scale = 4e-4, 1.3
    shapes = [(2e-5, 1e-5), (3e-5, 5e-5), (1e-5, 2e-4), (5e-5, 3e-3), (2e-5, 1e-2), (4e-5, 4e-2)]
    fit = fit_live([Sample(f, v, f + fixed + scale * v) for f, v in shapes])
    assert fit.models == 6
    assert fit.fixed_s == pytest.approx(fixed * 6 / 6.5, rel=0.2)
    assert 1.15 < fit.scale < 1.35
    assert fit_live([]).models == 0 and fit_live([]).scale == 1.0


def test_measurements_of_few_calls_or_other_thread_counts_are_not_the_same_quantity() -> None:
    calibration = _calibration(threads=1)
    tiny = _profile(*TINY)
    overlapping = _version("flights", tiny, 5.0)
    overlapping["measured"]["cpu-local"]["flights"] = 2.0  # two calls at once share the CPUs: not one call's time
    for version in (_version("cold", tiny, 5.0, calls=MIN_CALLS - 1), _version("threads", tiny, 5.0, threads=2),
                    overlapping):
        corrected = with_live_feedback({"cpu-local": calibration}, [version])["cpu-local"]
        assert corrected.live_models == 0 and corrected.live_fixed_s == 0.0


def _two_type_catalog(dear_speedup: float) -> Catalog:
    catalog = load_catalog()
    base = catalog.get("cpu-local")
    cheap = base.model_copy(update={"name": "cheap", "price_per_hour": 0.1, "resource": "worker:cheap"})
    dear = base.model_copy(update={"name": "dear", "price_per_hour": 1.0, "resource": "worker:dear",
                                   "peak_fp32": base.peak_fp32 * dear_speedup,
                                   "bandwidth": base.bandwidth * dear_speedup})
    return catalog.model_copy(update={"types": [cheap, dear]})


@pytest.mark.parametrize("tight", [False, True])
def test_the_recommendation_takes_the_cheaper_type_unless_its_p99_misses(tight: bool) -> None:
    catalog = _two_type_catalog(dear_speedup=8.0)
    heavy = _profile(*HEAVY)
    calibrations = {w.name: assumed_calibration(w, catalog) for w in catalog.types}
    options = {o.worker_type: o for o in recommend(heavy, Objective(latency_ms=600_000, peak_rps=1), catalog,
                                                   calibrations).options}
    cheap_p99 = options["cheap"].latency_ms
    # Between the two types' p99 at batch 1, only the dear one meets it; above both, both do.
    target = cheap_p99 * 0.5 if tight else cheap_p99 * 2
    recommendation = recommend(heavy, Objective(latency_ms=target, percentile="p99", peak_rps=1), catalog,
                               calibrations)
    assert recommendation.choice is not None, recommendation.reasoning
    assert recommendation.choice.worker_type == ("dear" if tight else "cheap")
    missed = {o.worker_type: o for o in recommendation.options}["cheap"]
    assert missed.meets is (not tight)


def test_the_path_a_model_measured_on_a_type_is_its_own_else_the_types_median() -> None:
    versions = [{"measured": {"cpu-local": {"path_ms": ms}}} for ms in (0.3, 0.5, 2.0)]
    versions.append({"measured": {"cpu-local": {"p50_ms": 1.0}, "gpu-h200": "not a report"}})
    paths = live_paths(versions)
    assert set(paths) == {"cpu-local"} and paths["cpu-local"].path_s == pytest.approx(0.5e-3)
    own = live_paths(versions, {"cpu-local": {"path_ms": 4.0}, "cpu-large": {"path_ms": 1.0}})
    assert own["cpu-local"].path_s == pytest.approx(4e-3) and own["cpu-large"].path_s == pytest.approx(1e-3)
