"""The replica's batching plan from its measured call times and the arrival rate (seedserve.batch_plan)."""

from __future__ import annotations

import math

import pytest

from seedserve import batch_plan
from seedserve.batch_plan import ArrivalRate, CallCurve, knee, plan, sizes_to_measure

#: A CNN-like model on a CPU: items per second grow up to 8 items a call, then barely.
CNN = CallCurve({1: 1.0e-3, 2: 1.4e-3, 4: 2.2e-3, 8: 4.0e-3, 16: 8.0e-3})
#: A model whose calls cost the same per item at any size: batching buys nothing.
LINEAR = CallCurve({n: 2e-3 * n for n in (1, 2, 4, 8, 16)})


def test_warm_up_measures_powers_of_two_up_to_the_cap() -> None:
    assert sizes_to_measure(1) == [1]
    assert sizes_to_measure(16) == [1, 2, 4, 8, 16]
    assert sizes_to_measure(12) == [1, 2, 4, 8, 12]


def test_the_curve_reads_between_and_beyond_its_measured_sizes() -> None:
    assert CNN.seconds(1) == pytest.approx(1e-3)
    assert CNN.seconds(3) == pytest.approx((CNN.seconds(2) + CNN.seconds(4)) / 2)
    assert CNN.seconds(32) == pytest.approx(2 * CNN.seconds(16))
    with pytest.raises(ValueError, match="positive"):
        CallCurve({1: 0.0})


def test_live_calls_move_their_own_measured_size_only() -> None:
    curve = CallCurve({1: 1e-3, 4: 2e-3, 16: 5e-3})
    for _ in range(200):
        curve.add(4, 4e-3)  # the replica's calls at 4 take twice what warm-up measured
        curve.add(3, 9e-3)  # between measured sizes: moves none
        curve.add(0, 1e-3)  # an empty query's call: nothing to learn
    assert curve.seconds(4) == pytest.approx(4e-3, rel=0.01)
    assert curve.seconds(1) == 1e-3
    assert curve.seconds(16) == 5e-3
    for _ in range(200):
        curve.add(32, 20e-3)  # past the largest: the largest moves toward it, scaled
    assert curve.seconds(16) == pytest.approx(10e-3, rel=0.01)


def test_the_knee_is_where_doubling_stops_paying() -> None:
    assert knee(CNN, 16) == 8  # 8 -> 16 adds 1 % items per second
    assert knee(CNN, 4) == 4
    assert knee(LINEAR, 16) == 1
    assert knee(CNN, 1) == 1


def test_the_rate_decays_with_its_time_constant() -> None:
    rate = ArrivalRate(tau_s=1.0)
    assert rate.rate(0.0) == 0.0
    for i in range(2000):  # 1,000 items a second for 2 s
        rate.add(i / 1000)
    assert rate.rate(2.0) == pytest.approx(1000 * (1 - math.exp(-2)), rel=0.02)
    assert rate.rate(4.0) == pytest.approx(rate.rate(2.0) * math.exp(-2), rel=0.01)


def test_a_lone_query_never_waits() -> None:
    light = plan(CNN, rate_per_s=10, cap=16)
    assert light.wait_s == 0.0
    assert light.batch_size == 8
    assert "no wait" in light.reason


def test_the_wait_adapts_to_the_arrival_rate() -> None:
    """Light: no wait. Past half busy at batch 1: a wait bounded by one call
    at batch 1 and by the time the batch takes to fill; it shrinks as the
    rate grows, and goes when the rate falls again."""
    waits = [plan(CNN, rate_per_s=rate, cap=16).wait_s for rate in (10, 300, 600, 5_000, 20_000, 300)]
    assert waits[0] == waits[1] == waits[-1] == 0.0  # 30 % busy at 300/s
    assert waits[2] == waits[3] == pytest.approx(CNN.seconds(1))  # filling 8 takes longer than one 1 ms call
    assert waits[4] == pytest.approx(7 / 20_000)  # the batch fills in 0.35 ms
    assert batch_plan.WAIT_FROM_LOAD / CNN.seconds(1) == 500


def test_a_model_that_batching_does_not_help_runs_one_query_a_call_without_waits() -> None:
    busy = plan(LINEAR, rate_per_s=400, cap=16)
    assert (busy.batch_size, busy.wait_s) == (1, 0.0)


def test_pinned_values_are_served_as_written() -> None:
    pinned = plan(CNN, 5_000, 16, pinned_size=16, pinned_wait_s=0.005)
    assert (pinned.batch_size, pinned.wait_s) == (16, 0.005)
    assert plan(CNN, 10, 16, pinned_size=4).batch_size == 4
    assert plan(CNN, 10, 2, pinned_size=4).batch_size == 2  # the model's cap still holds
    assert plan(CNN, 10, 1, pinned_wait_s=0.005).wait_s == 0.0  # no batching, nothing to wait for
    assert plan(CNN, 10, 16, pinned_wait_s=0.0).wait_s == 0.0


def test_the_reserved_cpus_split_into_threads_and_calls_at_once() -> None:
    assert batch_plan.reserved_cpus(0.1) == 1  # the default manifest: one call on one thread
    assert batch_plan.reserved_cpus(2.0) == 2
    assert batch_plan.reserved_cpus(2.5) == 2  # half a CPU runs no thread of its own
    assert batch_plan.splits(1) == [(1, 1)]
    assert batch_plan.splits(2) == [(2, 1), (1, 2)]
    assert batch_plan.splits(4) == [(4, 1), (2, 2), (1, 4)]
    assert batch_plan.splits(6) == [(6, 1), (3, 2), (1, 6)]
    assert all(t * k <= cpus for cpus in range(1, 17) for t, k in batch_plan.splits(cpus))


def test_calls_at_once_replace_threads_only_when_they_buy_more_items_a_second() -> None:
    parallelism = batch_plan.parallelism
    # A large convolution that threads speed up: one call on all four CPUs.
    threaded = parallelism(4, {(4, 1): 3000.0, (2, 2): 2900.0, (1, 4): 2500.0})
    assert (threaded.threads, threaded.flights) == (4, 1)
    # A small model that threads barely help: four calls at once on one thread each.
    small = parallelism(4, {(4, 1): 1000.0, (2, 2): 1600.0, (1, 4): 2400.0})
    assert (small.threads, small.flights) == (1, 4)
    assert "2400 items/s" in small.reason
    # Within the gain of the best so far, the shorter calls (more threads) stay.
    close = parallelism(2, {(2, 1): 1000.0, (1, 2): 1040.0})
    assert (close.threads, close.flights) == (2, 1)
    # A split that failed at warm-up (not measured) is not chosen.
    failed = parallelism(2, {(2, 1): 1000.0})
    assert (failed.threads, failed.flights) == (2, 1)
    assert (parallelism(1, {}).threads, parallelism(1, {}).flights) == (1, 1)
    unmeasured = parallelism(4, {}, "calls too quick to split")  # e.g. a model the event loop runs
    assert (unmeasured.threads, unmeasured.flights) == (4, 1) and "calls too quick to split" in unmeasured.reason
