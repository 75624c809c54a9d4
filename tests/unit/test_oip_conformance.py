"""The Open Inference Protocol's shapes, in process: the error body, output
metadata from observed outputs, the statistics answer, the reconciler's
health entry, and the master's document for /v2. Nothing here starts Ray."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seedserve.deployments._query import error_parts, not_accepted, oip_error_parts
from seedserve.deployments._stats import InferenceStats
from seedserve.deployments._v2_rest import oip_output_metadata
from seedserve.deployments.master import _index_request, reconciler_health
from seedserve.deployments.master_document import master_document
from seedserve.errors import InputTooLarge, InvalidInput, Overloaded, SeedserveError, from_body


def test_an_oip_error_body_has_the_message_as_a_string_and_seedserves_fields_beside_it() -> None:
    status, headers, body = oip_error_parts(InvalidInput("input 'x': shape [2] needs 2 elements", input="x"))
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": "input 'x': shape [2] needs 2 elements", "code": "invalid_input", "input": "x"}


def test_an_oip_error_keeps_status_retry_after_and_details() -> None:
    status, headers, body = oip_error_parts(Overloaded("the replicas are full; retry", retry_after_s=3))
    assert (status, headers["Retry-After"]) == (503, "3")
    assert json.loads(body) == {"error": "the replicas are full; retry", "code": "overloaded", "retry_after_s": 3}
    assert json.loads(oip_error_parts(InputTooLarge("too big", limit=10))[2])["limit"] == 10


@pytest.mark.parametrize("exc", [not_accepted("m"), InvalidInput("bad", input="x"), InputTooLarge("big", limit=5)])
def test_the_sdk_rebuilds_the_same_error_from_either_body(exc: SeedserveError) -> None:
    for parts in (error_parts, oip_error_parts):
        status, _, body = parts(exc)
        again = from_body(json.loads(body), status)
        assert (type(again), again.message, again.input, again.details) == (type(exc), exc.message, exc.input,
                                                                            exc.details)


def test_output_metadata_takes_observed_shapes_with_the_batch_dimension_as_minus_one() -> None:
    one = {"y": np.zeros((1, 4), np.float32), "ids": np.zeros((1,), np.int64), "seq": np.zeros((1, 3, 7), np.float64)}
    two = {"y": np.zeros((2, 4), np.float32), "ids": np.zeros((2,), np.int64), "seq": np.zeros((2, 5, 7), np.float64)}
    assert oip_output_metadata(one, two, ["y", "ids", "seq"]) == [
        {"name": "y", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "ids", "datatype": "INT64", "shape": [-1]},
        {"name": "seq", "datatype": "FP64", "shape": [-1, -1, 7]},
    ]
    # A model that takes no second item: the observed shape, batch dimension open.
    assert oip_output_metadata({"y": np.zeros((1, 4), np.float16)}, None, ["y"]) == [
        {"name": "y", "datatype": "FP16", "shape": [-1, 4]}]


def test_statistics_count_requests_queue_time_calls_and_batches() -> None:
    stats = InferenceStats(clock=lambda: 1700000000.5)
    stats.answered(True, 0.002)
    stats.answered(True, 0.003)
    stats.answered(False, 0.001)
    stats.queued(0.0005)
    stats.call(3, 0.001)
    stats.call(1, 0.0005)
    stats.call(3, 0.002)
    (model,) = stats.as_oip("m", 2)["model_stats"]
    assert (model["name"], model["version"], model["last_inference"]) == ("m", "2", 1700000000500)
    assert (model["inference_count"], model["execution_count"]) == (7, 3)
    inference = model["inference_stats"]
    assert inference["success"] == {"count": 2, "ns": 5_000_000}
    assert inference["fail"] == {"count": 1, "ns": 1_000_000}
    assert inference["queue"] == {"count": 1, "ns": 500_000}
    assert inference["compute_infer"] == {"count": 3, "ns": 3_500_000}
    assert [(b["batch_size"], b["compute_infer"]) for b in model["batch_stats"]] == [
        (1, {"count": 1, "ns": 500_000}), (3, {"count": 2, "ns": 3_000_000})]


@pytest.mark.parametrize(("done", "last_ok", "error", "now", "state"), [
    (False, 100.0, None, 105.0, "ok"),
    (False, None, None, 10.0, "ok"),  # starting: no pass yet, not for long
    (False, None, None, 40.0, "stalled"),
    (False, 100.0, None, 131.0, "stalled"),
    (False, 100.0, "ConnectionFailure: the database is unreachable", 101.0, "failing"),
    (True, 100.0, None, 101.0, "stopped"),
])
def test_the_reconciler_is_healthy_only_while_its_passes_succeed(
    done: bool, last_ok: float | None, error: str | None, now: float, state: str
) -> None:
    entry = reconciler_health(done, last_ok, error, started=0.0, now=now, interval_s=1.0)
    assert entry["state"] == state and entry["error"] == error


def test_a_repository_index_request_is_empty_or_an_object_with_a_boolean_ready() -> None:
    assert _index_request(b"") is False and _index_request(b'{"ready": true}') is True
    for bad, named in [(b"[1]", None), (b'{"ready": "yes"}', "ready"), (b"{", None)]:
        with pytest.raises(InvalidInput) as raised:
            _index_request(bad)
        assert raised.value.input == named


def test_the_master_document_gives_every_v2_error_the_protocols_shape() -> None:
    document = master_document()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                if status.startswith(("4", "5")) and path.startswith("/v2") and path != "/v2/health/ready":
                    assert schema == {"$ref": "#/components/schemas/OipError"}, (method, path, status)
                elif status.startswith("4") and not path.startswith("/v2"):
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
    assert {"/livez", "/v2/repository/index", "/v2/models/{name}/stats",
            "/v2/models/{name}/versions/{version}/stats"} <= set(document["paths"])
