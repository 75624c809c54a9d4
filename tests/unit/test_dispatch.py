"""The replica's decisions (seedserve.dispatch), without Ray: the batch size
it serves with, the route a query takes, which queries share a call, and
each query's share of a call's outputs."""

from __future__ import annotations

import numpy as np
import pytest

from seedserve import dispatch
from seedserve.codecs.registry import Decoded, kind
from seedserve.dispatch import Route
from seedserve.errors import ModelError, SeedserveError

QUICK, SLOW = dispatch.INLINE_CALL_S / 10, dispatch.INLINE_CALL_S * 10


def _query(rows: int, width: int = 3) -> tuple[dict[str, Decoded], int]:
    return {"x": np.arange(rows * width, dtype=np.float32).reshape(rows, width)}, rows


def test_the_batch_size_is_the_manifests_the_default_when_open_and_one_when_refused() -> None:
    assert dispatch.batch_size(None, None) == dispatch.DEFAULT_MAX_BATCH_SIZE
    assert dispatch.batch_size(8, None) == 8
    assert dispatch.batch_size(1, None) == 1
    assert dispatch.batch_size(None, "outputs are not per item") == 1
    assert dispatch.batch_size(8, "a fixed batch dimension") == 1


def test_a_lone_query_never_waits_for_a_batch() -> None:
    # Alone on the replica (running == 1), with a wait set: it runs at once, inline or on the model's thread.
    assert dispatch.route(1, 16, max_wait_ms=5, call_s=QUICK, running=1) is Route.INLINE
    assert dispatch.route(1, 16, max_wait_ms=5, call_s=SLOW, running=1) is Route.EXECUTOR
    # Nor for the turns of the loop that a quick model's queries share (Route.TOGETHER).
    assert dispatch.route(1, 16, max_wait_ms=0, call_s=QUICK, running=1) is Route.INLINE
    # With another query running it may go through Serve's batching.
    assert dispatch.route(1, 16, max_wait_ms=5, call_s=SLOW, running=2) is Route.SERVE_BATCH


def test_a_quick_model_without_a_wait_shares_calls_within_a_few_turns_of_the_loop() -> None:
    assert dispatch.route(1, 16, max_wait_ms=0, call_s=QUICK, running=2) is Route.TOGETHER
    assert dispatch.route(1, 16, max_wait_ms=0, call_s=QUICK, running=9) is Route.TOGETHER
    assert dispatch.route(1, 16, max_wait_ms=0, call_s=SLOW, running=9) is Route.SERVE_BATCH


def test_a_query_that_fills_a_batch_or_a_replica_without_batching_runs_alone() -> None:
    assert dispatch.route(16, 16, max_wait_ms=5, call_s=SLOW, running=9) is Route.EXECUTOR
    assert dispatch.route(40, 16, max_wait_ms=0, call_s=QUICK, running=9) is Route.INLINE
    assert dispatch.route(1, 1, max_wait_ms=0, call_s=QUICK, running=9) is Route.INLINE
    assert dispatch.route(1, 1, max_wait_ms=5, call_s=SLOW, running=9) is Route.EXECUTOR


def test_queries_run_together_by_signature_and_never_past_the_batch_size() -> None:
    queries = [_query(2), _query(1, width=5), _query(3), _query(4), _query(1, width=5), _query(9)]
    signatures = [arrays["x"].shape[1:] for arrays, _ in queries]
    calls = dispatch.calls(signatures, [count for _, count in queries], 8)
    assert sorted(i for members in calls for i in members) == list(range(6))  # every query once
    assert [0, 2] in calls and [3] in calls and [1, 4] in calls and [5] in calls  # 2+3 fit, 4 more would not
    for members in calls:
        assert len({queries[i][0]["x"].shape[1] for i in members}) == 1
        assert sum(queries[i][1] for i in members) <= 8 or len(members) == 1


def test_merged_calls_merge_what_shares_a_call_and_pass_a_lone_query_as_is() -> None:
    queries = [_query(2), _query(1, width=5), _query(3)]
    calls = list(dispatch.merged_calls(queries, 8, {"x": kind("tensor")}))
    assert [(members, counts) for members, counts, _ in calls] == [([0, 2], [2, 3]), ([1], [1])]
    merged, alone = calls[0][2], calls[1][2]
    assert isinstance(merged["x"], np.ndarray)
    assert np.array_equal(merged["x"], np.concatenate([queries[0][0]["x"], queries[2][0]["x"]]))
    assert alone is queries[1][0]


def test_each_query_gets_its_rows_or_the_error_of_its_call() -> None:
    outputs = {"y": np.arange(5, dtype=np.float32)}
    parts = dispatch.shares(outputs, [2, 3])
    assert [p["y"].tolist() for p in parts if not isinstance(p, SeedserveError)] == [[0, 1], [2, 3, 4]]
    assert dispatch.shares(outputs, [5]) == [outputs]
    failed = ModelError("boom")
    assert dispatch.shares(failed, [2, 3]) == [failed, failed]


def test_outputs_that_do_not_split_per_query_fail_every_query_of_the_call() -> None:
    parts = dispatch.shares({"loss": np.ones(())}, [1, 1])
    assert len(parts) == 2
    for part in parts:
        assert isinstance(part, ModelError)
        assert "could not be split per query" in part.message


@pytest.mark.parametrize(("ongoing", "batch", "expected"), [(4, 1, 4), (4, 16, 32), (64, 16, 64), (0, 1, 1)])
def test_a_replica_admits_two_batches_when_batching(ongoing: int, batch: int, expected: int) -> None:
    assert dispatch.capacity(ongoing, batch) == expected


@pytest.mark.parametrize(("ongoing", "batch", "flights", "expected"),
                         [(4, 16, 2, 48), (4, 16, 4, 80), (0, 1, 4, 4), (8, 1, 4, 8), (128, 16, 2, 128)])
def test_a_replica_admits_a_batch_per_call_in_flight_and_one_filling(ongoing: int, batch: int, flights: int,
                                                                     expected: int) -> None:
    assert dispatch.capacity(ongoing, batch, flights) == expected


def test_the_decisions_import_neither_ray_nor_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, seedserve.dispatch; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'torch', 'starlette'}))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"
