"""The end-to-end delay model (seedserve.profiler.queueing): pure, no Ray."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from seedserve.batch_plan import CallCurve, plan
from seedserve.codecs.schema import Batching, Objective
from seedserve.profiler.catalog import load_catalog
from seedserve.profiler.predict import assumed_calibration, recommend
from seedserve.profiler.profile import profile_model
from seedserve.profiler.queueing import Policy, QueryPath, call_times, delay, policy_of, saturation_rps

SLOW = call_times({1: 0.010})  # on the model's thread (over dispatch.INLINE_CALL_S)


@pytest.mark.parametrize("rho", [0.3, 0.6])
def test_one_query_per_call_matches_the_m_d_1_queue(rho: float) -> None:
    # Pollaczek-Khinchine for deterministic service: W = s + rho * s / (2 (1 - rho)).
    answer = delay(SLOW, 0.0, rho / 0.010, policy=Policy(batch_size=1), cv=0.0, queries=40_000)
    assert answer.mean_s == pytest.approx(0.010 + rho * 0.010 / (2 * (1 - rho)), rel=0.05)
    assert answer.mean_batch == 1.0


@pytest.mark.parametrize("wait_s", [0.0, 0.005])
def test_a_lone_query_pays_its_path_and_one_call_and_waits_for_no_batch(wait_s: float) -> None:
    answer = delay(SLOW, 0.001, 0.5, policy=Policy(batch_size=16, max_wait_s=wait_s), cv=0.0, queries=400)
    assert answer.p50_s == pytest.approx(0.011)
    assert answer.mean_batch == 1.0


def test_batching_serves_a_rate_that_one_query_per_call_cannot() -> None:
    call = call_times({1: 0.004, 16: 0.016})  # 1 ms per item after a 3 ms fixed cost
    rate = 400.0  # batch 1 keeps up with 250/s
    assert saturation_rps(call, 0.0002, Policy(batch_size=1)) < rate
    assert math.isinf(delay(call, 0.0002, rate, policy=Policy(batch_size=1)).p99_s)
    batched = delay(call, 0.0002, rate, policy=Policy(batch_size=16))
    assert batched.mean_batch > 1.5 and batched.p99_s < 0.05
    assert batched.p50_s < batched.p99_s


def test_delay_grows_with_the_rate_toward_capacity() -> None:
    call = call_times({1: 0.002, 16: 0.010})
    capacity = saturation_rps(call, 0.0003, Policy())
    p99s = [delay(call, 0.0003, f * capacity).p99_s for f in (0.1, 0.5, 0.9)]
    assert p99s == sorted(p99s) and p99s[-1] > 2 * p99s[0]


def test_call_times_interpolate_a_fixed_cost_plus_a_cost_per_item() -> None:
    call = call_times({1: 0.002, 9: 0.010})
    assert call(5) == pytest.approx(0.006)
    assert call(17) == pytest.approx(0.018)
    assert call_times({4: 0.008})(8) == pytest.approx(0.016)


def test_the_fixed_part_of_the_path_adds_latency_but_no_load() -> None:
    near = QueryPath(path_s=0.0005, fixed_s=0.0, cv=0.0).delay(SLOW, 50.0, Policy())
    far = QueryPath(path_s=0.0005, fixed_s=0.003, cv=0.0).delay(SLOW, 50.0, Policy())
    assert far.p50_s == pytest.approx(near.p50_s + 0.003)
    assert far.utilization == near.utilization


def test_more_load_takes_more_replicas_of_the_same_type() -> None:
    model = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512))
    profile = profile_model(model, lambda n: torch.zeros(n, 512), lambda m, x: m(x))
    catalog = load_catalog()
    only = catalog.model_copy(update={"types": [catalog.get("cpu-local")]})
    calibrations = {"cpu-local": assumed_calibration(only.types[0], only)}
    light, heavy = (recommend(profile, Objective(latency_ms=200, peak_rps=rps), only, calibrations).choice
                    for rps in (10, 20_000))
    assert light is not None and heavy is not None
    assert light.replicas == 1 and heavy.replicas > 1
    assert heavy.p99_ms <= 200 and heavy.p50_ms <= heavy.p99_ms


def test_a_policy_left_to_the_replica_is_the_one_its_plan_chooses_at_the_rate() -> None:
    """The manifest leaves batching open: the simulated replica serves the knee
    of the call times, waits for no batch at a light rate and waits (at most
    one call) near capacity, as seedserve.batch_plan plans on a real replica."""
    call = call_times({1: 0.004, 16: 0.024})  # 3 ms fixed, 1.3 ms an item: a slow model, on its thread
    chosen = policy_of(Batching())
    assert (chosen.chosen_size, chosen.chosen_wait) == (True, True)
    curve = CallCurve({n: call(n) for n in (1, 2, 4, 8, 16)})
    light, busy = chosen.at(call, 20.0), chosen.at(call, 400.0)
    assert light.max_wait_s == 0.0 and busy.max_wait_s > 0.0
    assert busy.max_wait_s == plan(curve, 400.0, 16).wait_s <= call(1)
    assert light.batch_size == busy.batch_size == plan(curve, 0.0, 16).batch_size
    pinned = policy_of(Batching(max_batch_size=8, max_wait_ms=2))
    assert pinned.at(call, 400.0) == pinned
    assert policy_of(Batching(max_wait_ms=0)).at(call, 400.0).max_wait_s == 0.0
    # A quick model's queries wait turns of the event loop, never a timer.
    assert chosen.at(call_times({1: 0.0001, 16: 0.0003}), 5_000.0).max_wait_s == 0.0


def test_a_path_its_replicas_measured_on_a_type_prices_the_recommendation_there() -> None:
    """A type whose replicas measured a slow path per query (a large input's
    decode) needs more replicas for the same target than the default path."""
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    profile = profile_model(model, lambda n: torch.zeros(n, 64), lambda m, x: m(x))
    catalog = load_catalog()
    only = catalog.model_copy(update={"types": [catalog.get("cpu-local")]})
    calibrations = {"cpu-local": assumed_calibration(only.types[0], only)}
    objective = Objective(latency_ms=100, peak_rps=200)
    default = recommend(profile, objective, only, calibrations).choice
    slow = recommend(profile, objective, only, calibrations, paths={"cpu-local": QueryPath(path_s=0.02)}).choice
    assert default is not None and slow is not None
    assert default.path_ms == pytest.approx(QueryPath().path_s * 1e3) and slow.path_ms == pytest.approx(20.0)
    assert default.replicas == 1 and slow.replicas >= 5  # 200 queries a second of 20 ms each: 4 replicas' worth
