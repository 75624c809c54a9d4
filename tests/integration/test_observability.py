"""Metrics, logs and request ids on the real stack: /metrics after known
traffic, the Grafana dashboard against what /metrics really exports, nothing
of seedserve's on Ray's metrics port, request ids in answers and in log lines
from every process (the system fixture logs as json)."""

from __future__ import annotations

import collections
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from seedserve.client import ManagerClient
from seedserve.errors import InvalidManifest
from tests.conftest import System
from tests.helpers import MLP_MANIFEST, error_fields, eventually, make_mlp, save_torchscript

pytestmark = pytest.mark.integration

MODEL = "observed"
DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "seedserve.json"
#: The labels seedserve's series may carry (le: a histogram's bucket bound).
#: route: the master's own request counter, by one of its routes or a model path with the name left out.
ALLOWED_LABELS = {"model", "version", "code", "error", "le", "route"}


@pytest.fixture(scope="module")
def observed(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An MLP with an access log, served; its key."""
    artifact = save_torchscript(make_mlp(seed=5), tmp_path_factory.mktemp("obs") / "m.pt")
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        key = manager.register(artifact, {**MLP_MANIFEST, "name": MODEL, "logging": {"access": True}})
        try:
            auth = {"Authorization": f"Bearer {key}"}
            eventually(lambda: httpx.post(f"{system.master_url}/models/{MODEL}/predict", json={"x": [[0.0] * 16]},
                                          headers=auth, timeout=30).raise_for_status(), timeout_s=120)
            # /v2 goes through the master, which forwards once its reconciler has seen the application RUNNING.
            eventually(lambda: httpx.post(f"{system.master_url}/v2/models/{MODEL}/infer", headers=auth, timeout=30,
                                          json={"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32",
                                                            "data": [0.0] * 16}]}).raise_for_status(),
                       timeout_s=60)
            # Each eventually() above ended at its first success, the last thing
            # this fixture sent: once /metrics shows both, it shows all of it.
            eventually(lambda: _assert_equal(_ours(_scrape(system), "seedserve_requests_total", code="200"),
                                             {(("code", "200"),): 2.0}), timeout_s=30)
            yield key
        finally:
            manager.delete_model(MODEL)


def _assert_equal(got: object, expected: object) -> None:
    assert got == expected


def _scrape(system: System) -> str:
    response = httpx.get(system.master_url + "/metrics", headers={"Authorization": f"Bearer {system.metrics_token}"},
                         timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def _ours(text: str, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of ``name`` for the test's model, keyed by their other labels."""
    found = {}
    for sample, sample_labels, value in _samples(text):
        if sample == name and sample_labels.get("model") == MODEL and labels.items() <= sample_labels.items():
            rest = tuple(sorted((k, v) for k, v in sample_labels.items() if k not in ("model", "version")))
            found[rest] = value
    return found


def _traffic(system: System, key: str) -> list[httpx.Response]:
    """Good queries and several kinds of error, native and /v2; every answer."""
    native = f"{system.master_url}/models/{MODEL}/predict"
    v2 = f"{system.master_url}/v2/models/{MODEL}/infer"
    auth = {"Authorization": f"Bearer {key}"}
    good_v2 = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}
    answers = []
    with httpx.Client(timeout=30) as http:
        for i in range(4):
            answers.append(http.post(native, json={"x": [[float(i)] * 16]}, headers=auth))
        for _ in range(2):
            answers.append(http.post(v2, json=good_v2, headers=auth))
        for _ in range(2):
            answers.append(http.post(native, json={"x": [[1.0, 2.0]]}, headers=auth))  # wrong shape
            answers.append(http.post(native, content=b"{not json", headers=auth))
            answers.append(http.post(native, json={"x": [[0.0] * 16]}, headers={"Authorization": "Bearer wrong"}))
            answers.append(http.post(native, json={"x": [[0.0] * 16]}))  # no key
            answers.append(http.get(native, headers=auth))  # wrong method
            answers.append(http.post(v2, json={"inputs": [{**good_v2["inputs"][0], "datatype": "BYTES"}]},
                                     headers=auth))
    return answers


def test_metrics_count_the_traffic_sent_per_model_version_with_no_ray_labels(
    system: System, observed: str
) -> None:
    before = _scrape(system)
    answers = _traffic(system, observed)
    by_code = collections.Counter(str(a.status_code) for a in answers)
    by_error = collections.Counter((str(a.status_code), error_fields(a)["code"])
                                   for a in answers if a.status_code >= 400)
    assert by_code["200"] == 6 and {"400", "401", "405"} <= set(by_code), by_code

    def delta(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        old = _ours(before, name)
        return {labels: value - old.get(labels, 0.0) for labels, value in _ours(text, name).items()
                if value - old.get(labels, 0.0)}

    def counted() -> str:
        text = _scrape(system)
        assert delta(text, "seedserve_requests_total") == {(("code", c),): float(n) for c, n in by_code.items()}
        return text

    # Replicas report their totals to the master every second.
    text = eventually(counted, timeout_s=30, interval_s=1)
    assert delta(text, "seedserve_errors_total") == {
        (("code", c), ("error", e)): float(n) for (c, e), n in by_error.items()}
    assert delta(text, "seedserve_request_duration_seconds_count") == {(): float(len(answers))}
    assert _ours(text, "seedserve_replicas") == {(): 1.0}
    assert _ours(text, "seedserve_queue_depth") == {(): 0.0}
    assert _ours(text, "seedserve_batch_size_count")

    samples = _samples(text)
    assert samples and all(name.startswith("seedserve_") for name, _, _ in samples)
    labels = {label for _, sample_labels, _ in samples for label in sample_labels}
    assert labels <= ALLOWED_LABELS, labels - ALLOWED_LABELS
    # One series per model version, not one per replica.
    ours = [(name, sorted(labels.items())) for name, labels, _ in samples if labels.get("model") == MODEL]
    assert len(ours) == len(set(map(repr, ours)))
    assert {labels["version"] for name, labels, _ in samples if labels.get("model") == MODEL} == {"1"}


def test_seconds_buckets_and_counter_types(system: System, observed: str) -> None:
    families = {f.name: f for f in text_string_to_metric_families(_scrape(system))}
    assert families["seedserve_requests"].type == "counter"
    assert families["seedserve_errors"].type == "counter"
    assert families["seedserve_request_duration_seconds"].type == "histogram"
    bounds = {s.labels["le"] for s in families["seedserve_request_duration_seconds"].samples if "le" in s.labels}
    assert {"0.001", "0.1", "1.0", "+Inf"} <= bounds  # seconds, not milliseconds


def test_nothing_of_seedserve_goes_out_on_rays_metrics_port(system: System, observed: str) -> None:
    port = int(system.env["SEEDSERVE_INTERNAL_PORT_BASE"]) + 4  # --metrics-export-port (seedserve.cluster.ports)
    page = eventually(lambda: httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).raise_for_status(), 30)
    assert page.text.startswith("#") or "ray_" in page.text  # it is Ray's agent answering
    assert "seedserve" not in page.text


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    return exprs


def test_the_grafana_dashboard_uses_exported_names_and_shows_every_series(system: System, observed: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = {name for expr in _expressions(dashboard) for name in re.findall(r"\bseedserve_[a-z_]+\b", expr)}
    text = _scrape(system)
    exported = {name for name, _, _ in _samples(text)}
    assert used <= exported, f"the dashboard queries names /metrics does not export: {sorted(used - exported)}"
    for family in text_string_to_metric_families(text):
        names = {s.name for s in family.samples}
        assert names & used, f"no panel shows {family.name}"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("requests", "errors", "p50", "p99", "batch", "replicas", "queue"):
        assert topic in titles


def _log_lines(system: System) -> list[dict[str, Any]]:
    """seedserve's log file, every line parsed as json (SEEDSERVE_LOG_FORMAT=json in the fixture)."""
    lines = (system.data_dir / "logs" / "seedserve.log").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_a_request_id_sent_in_is_in_the_answer_and_the_error_line(system: System, observed: str) -> None:
    native = f"{system.master_url}/models/{MODEL}/predict"
    sent = "obs-" + secrets.token_hex(8)
    answer = httpx.post(native, json={"x": [[1.0]]},
                        headers={"Authorization": f"Bearer {observed}", "X-Request-Id": sent})
    assert answer.status_code == 400 and answer.headers["x-request-id"] == sent
    assert answer.headers.get_list("x-request-id") == [sent]

    def logged() -> dict[str, Any]:
        [line] = [line for line in _log_lines(system)
                  if line.get("request_id") == sent and line["logger"] == "seedserve.errors"]
        return line

    line = eventually(logged, timeout_s=20)
    assert line["model"] == MODEL and line["version"] == 1 and line["process"] == "model"
    assert "answered 400" in line["message"] and line["level"] == "INFO"
    access = [x for x in _log_lines(system) if x.get("request_id") == sent and x["logger"] == "seedserve.access"]
    assert len(access) == 1 and access[0]["message"].startswith("http 400 ")


def test_every_answer_carries_a_request_id(system: System, observed: str) -> None:
    auth = {"Authorization": f"Bearer {observed}"}
    v2 = f"{system.master_url}/v2/models/{MODEL}/infer"
    sent = "v2-" + secrets.token_hex(8)
    bad = httpx.post(v2, json={"inputs": []}, headers={**auth, "X-Request-Id": sent})
    assert 400 <= bad.status_code < 500 and bad.headers.get_list("x-request-id") == [sent]
    good = httpx.post(v2, json={"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.0] * 16}]},
                      headers={**auth, "X-Request-Id": "v2-ok"})
    assert good.status_code == 200 and good.headers.get_list("x-request-id") == ["v2-ok"]
    line = eventually(lambda: next(x for x in _log_lines(system) if x.get("request_id") == sent
                                   and x["logger"] == "seedserve.errors"), timeout_s=20)
    assert line["model"] == MODEL and line["version"] == 1
    for url in (system.master_url + "/healthz", system.manager_url + "/healthz", system.manager_url + "/api/models"):
        answer = httpx.get(url, headers={"X-Request-Id": "mine-1"})
        assert answer.headers.get_list("x-request-id") == ["mine-1"], url
    # An id that is not sane (spaces, over 128 characters, sent twice) is replaced by a new one.
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    for insane in (["two words"], ["x" * 200], ["one", "two"]):
        answer = httpx.post(f"{system.master_url}/models/{MODEL}/predict", json={"x": [[0.0] * 16]},
                            headers=[("Authorization", auth["Authorization"]), *(("X-Request-Id", v) for v in insane)])
        [given] = answer.headers.get_list("x-request-id")
        assert answer.status_code == 200 and re.fullmatch(uuid, given), given
    for url in (system.master_url + "/healthz", system.manager_url + "/healthz"):
        assert re.fullmatch(uuid, httpx.get(url, headers={"X-Request-Id": "two words"}).headers["x-request-id"])


def test_log_lines_from_every_process_reach_the_file_up_names_as_json(system: System, observed: str) -> None:
    assert str(system.data_dir / "logs" / "seedserve.log") in system.log.read_text()
    lines = _log_lines(system)  # each parses
    processes = {line["process"] for line in lines}
    assert {"manager", "master", "model"} <= processes, processes
    assert any(line["process"] == "master" and line["logger"] == "seedserve.reconciler" for line in lines)
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)


def test_the_master_and_replicas_log_lines_are_also_in_rays_log_directory(system: System, observed: str) -> None:
    # Where `seedserve up` started Ray: Ray's default temporary directory, as the fixture sets none.
    temp = Path(system.env.get("SEEDSERVE_RAY_TEMP_DIR") or system.env.get("RAY_TMPDIR")
                or system.env.get("TMPDIR") or "/tmp")
    logs = (temp / "ray" / "session_latest" / "logs").resolve()
    processes: set[str] = set()
    for path in [*logs.glob("*.err"), *logs.glob("*.out")]:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"logger": "seedserve' in line:
                processes.add(json.loads(line)["process"])
    assert {"master", "model"} <= processes, (logs, processes)


def test_a_bad_access_log_setting_is_refused_naming_it(system: System, tmp_path: Path) -> None:
    artifact = save_torchscript(make_mlp(), tmp_path / "m.pt")
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        with pytest.raises(InvalidManifest, match="logging.access") as refused:
            manager.register(artifact, {**MLP_MANIFEST, "name": "obs-bad", "logging": {"access": "sometimes"}})
        assert "sampled" in refused.value.message
        assert all(m.name != "obs-bad" for m in manager.list_models())
