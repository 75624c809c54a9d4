"""Pure parts of metrics and logging: summing replicas' totals, the queue's
staleness, request ids, access sampling, the HAProxy rule, settings."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import ValidationError
from ray.serve._private.haproxy_templates import HAPROXY_CONFIG_TEMPLATE

from seedserve.cluster.haproxy import with_sane_request_ids
from seedserve.deployments._metrics import MetricsBook, ModelMetrics, PathCost, exposition
from seedserve.logs import AccessLog, _formatter, bind_request, request_id_from
from seedserve.settings import Settings


def test_totals_of_replicas_are_summed_and_a_silent_replicas_queue_drops_out() -> None:
    now = [0.0]
    book = MetricsBook(clock=lambda: now[0], stale_s=20)
    a, b = ModelMetrics(), ModelMetrics()
    a.answered(200, 0.01)
    a.queue(3)
    b.answered(400, 0.02, "invalid_input")
    b.queue(2)
    book.record("m", 1, "ra", a.totals())
    now[0] = 15
    book.record("m", 1, "rb", b.totals())
    [(_, summed)] = list(book.versions())
    assert summed.requests == {"200": 1, "400": 1} and summed.queue == 5
    now[0] = 30  # ra silent for 30 s: its counts stay, its queue goes
    [(_, summed)] = list(book.versions())
    assert summed.requests == {"200": 1, "400": 1} and summed.queue == 2
    text = exposition(book, {("m", 1): 2}).decode()
    assert 'seedserve_errors_total{code="400",error="invalid_input",model="m",version="1"} 1.0' in text


def test_request_ids_sane_ones_kept_others_replaced() -> None:
    assert request_id_from("abc-1.2") == "abc-1.2"
    for insane in (None, "", "two words", "x" * 129, 'q"uote'):
        assert request_id_from(insane) != insane and len(request_id_from(insane)) == 36


def test_sampled_access_log_takes_one_in_every() -> None:
    log = AccessLog("sampled", every=3)
    assert [log.wants() for _ in range(7)] == [True, False, False, True, False, False, True]
    assert not AccessLog(False).wants() and AccessLog(True).wants()


def test_json_lines_name_the_bound_request() -> None:
    bind_request("rid-1", "m", 2)
    record = logging.LogRecord("seedserve.errors", logging.INFO, __file__, 1, "answered %d", (400,), None)
    from seedserve.logs import _RequestFilter

    _RequestFilter().filter(record)
    line = json.loads(_formatter("json", "model").format(record))
    assert line["request_id"] == "rid-1" and line["model"] == "m" and line["version"] == 2
    assert "request_id=rid-1 model=m version=2" in _formatter("text", "model").format(record)


def test_the_haproxy_rule_goes_after_the_public_frontends_bind_line_once() -> None:
    rewritten = with_sane_request_ids(HAPROXY_CONFIG_TEMPLATE)
    assert "http-request del-header x-request-id unless seedserve_sane_id seedserve_one_id" in rewritten
    assert with_sane_request_ids(rewritten) == rewritten
    with pytest.raises(ValueError, match="http_frontend"):
        with_sane_request_ids("frontend other\n")


def test_log_settings_are_read_and_checked() -> None:
    assert Settings(log_level="debug").log_level == "DEBUG"  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="log_format"):
        Settings(log_format="xml")  # type: ignore[arg-type]


def test_the_path_per_query_is_the_cpu_outside_model_calls_over_enough_queries() -> None:
    clock = [0.0]
    path = PathCost(min_queries=4, cpu=lambda: clock[0])
    for _ in range(3):
        path.query()
        path.call(0.002)
        clock[0] += 0.003  # 2 ms in the call, 1 ms around it
    assert path.take(threads=1) is None  # three queries: too few, still counting
    path.query()
    path.call(0.002)
    clock[0] += 0.003
    assert path.take(threads=1) == pytest.approx(0.001)
    for _ in range(4):
        path.query()
        clock[0] += 0.001
    assert path.take(threads=2) is None  # a call's time is not its CPU on two threads
