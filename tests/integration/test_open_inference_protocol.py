"""Open Inference Protocol v2 on the real stack: server and model metadata,
readiness, and inference in the JSON form and with the binary extension; a
model's /v2 paths in one hop (the ingress sends them to the model's own
application), answering an unknown model and a wrong key alike."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from seedserve.client import ManagerClient
from tests.conftest import System
from tests.helpers import MLP_MANIFEST, eventually, make_mlp, save_torchscript

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def oip_model(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object]]:
    model = make_mlp(seed=3)
    artifact = save_torchscript(model, tmp_path_factory.mktemp("oip") / "m.pt")
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        key = manager.register(artifact, {**MLP_MANIFEST, "name": "oip-mlp"})
        yield key, model
        manager.delete_model("oip-mlp")


def test_infer_in_json_and_binary_forms_gives_the_in_process_outputs(
    system: System, oip_model: tuple[str, object], http: httpx.Client
) -> None:
    key, model = oip_model
    url = system.master_url + "/v2/models/oip-mlp/infer"
    auth = {"Authorization": f"Bearer {key}"}
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    expected = model(__import__("torch").from_numpy(x)).detach().numpy()  # type: ignore[operator]
    request = {"id": "q1", "inputs": [{"name": "x", "shape": [3, 16], "datatype": "FP32", "data": x.ravel().tolist()}]}

    def answered() -> httpx.Response:
        response = http.post(url, json=request, headers=auth)
        assert response.status_code == 200, response.text
        return response

    body = eventually(answered, timeout_s=90).json()
    assert body["model_name"] == "oip-mlp" and body["id"] == "q1"
    np.testing.assert_allclose(np.array(body["outputs"][0]["data"]).reshape(3, 4), expected, rtol=1e-5, atol=1e-6)

    header = json.dumps({"inputs": [{"name": "x", "shape": [3, 16], "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
    binary = http.post(url, content=header + x.tobytes(), headers={
        **auth, "Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"})
    assert binary.status_code == 200, binary.text
    n = int(binary.headers["inference-header-content-length"])
    assert json.loads(binary.content[:n])["outputs"][0]["parameters"]["binary_data_size"] == 48
    np.testing.assert_allclose(np.frombuffer(binary.content[n:], "<f4").reshape(3, 4), expected, rtol=1e-5, atol=1e-6)


def test_metadata_readiness_and_auth(system: System, oip_model: tuple[str, object], http: httpx.Client) -> None:
    key, _ = oip_model
    auth = {"Authorization": f"Bearer {key}"}
    eventually(lambda: _ready(http, system.master_url + "/v2/models/oip-mlp/ready", auth), timeout_s=90)
    meta = http.get(system.master_url + "/v2/models/oip-mlp", headers=auth).json()
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}]
    assert http.get(system.master_url + "/v2").json()["name"] == "seedserve"
    request = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.0] * 16}]}
    wrong = http.post(system.master_url + "/v2/models/oip-mlp/infer", json=request,
                      headers={"Authorization": "Bearer sk_no"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "unauthenticated"
    bad = http.post(system.master_url + "/v2/models/oip-mlp/infer", json={"inputs": [{"name": "x"}]},
                    headers={"Authorization": f"Bearer {key}"})
    assert bad.status_code == 400 and bad.json()["input"] == "x" and isinstance(bad.json()["error"], str)
    assert http.get(system.master_url + "/v2/models/no-such-model", headers=auth).status_code == 401


def _ready(http: httpx.Client, url: str, headers: dict[str, str]) -> None:
    assert http.get(url, headers=headers).status_code == 200


_MASTER_V2 = re.compile(r'^seedserve_master_requests_total\{route="/v2/models/\{name\}"\} (\S+)$', re.MULTILINE)


def _master_v2_count(system: System, http: httpx.Client) -> float:
    """What the master's /metrics (read with the metrics token) says it answered of models' /v2 paths."""
    response = http.get(system.master_url + "/metrics", headers={"Authorization": f"Bearer {system.metrics_token}"})
    assert response.status_code == 200, response.text
    found = _MASTER_V2.search(response.text)
    return float(found.group(1)) if found else 0.0


_ROW = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}


def _one_hop(system: System, http: httpx.Client, auth: dict[str, str]) -> None:
    """Wait until Serve's ingress has oip-mlp's route: until then the master forwards its /v2 queries."""

    def past_the_master() -> None:
        before = _master_v2_count(system, http)
        assert http.get(system.master_url + "/v2/models/oip-mlp/ready", headers=auth).status_code == 200
        assert _master_v2_count(system, http) == before

    eventually(past_the_master, timeout_s=90)


def test_v2_queries_reach_the_models_own_application_not_the_master(
    system: System, oip_model: tuple[str, object], http: httpx.Client
) -> None:
    key, _ = oip_model
    auth = {"Authorization": f"Bearer {key}"}
    base = system.master_url + "/v2/models/oip-mlp"
    _one_hop(system, http, auth)
    before = _master_v2_count(system, http)
    for _ in range(10):
        assert http.post(base + "/infer", json=_ROW, headers=auth).status_code == 200
    assert http.get(base, headers=auth).json()["name"] == "oip-mlp"
    assert http.get(base + "/stats", headers=auth).json()["model_stats"][0]["name"] == "oip-mlp"
    assert _master_v2_count(system, http) == before
    # A version-pinned path is the master's: the same counter moves for it.
    assert http.post(base + "/versions/1/infer", json=_ROW, headers=auth).status_code == 200
    assert _master_v2_count(system, http) == before + 1


def test_an_unknown_model_and_a_wrong_key_get_the_same_v2_answer_on_either_route(
    system: System, oip_model: tuple[str, object], http: httpx.Client
) -> None:
    _one_hop(system, http, {"Authorization": f"Bearer {oip_model[0]}"})
    wrong = {"Authorization": "Bearer sk_not_a_key_of_any_model"}

    def answer(path: str, name: str) -> tuple[int, str | None, str | None, dict[str, object]]:
        url = system.master_url + path
        response = http.post(url, json=_ROW, headers=wrong) if path.endswith("/infer") else http.get(url, headers=wrong)
        body = response.json()
        body["error"] = str(body["error"]).replace(repr(name), "<name>")
        return (response.status_code, response.headers.get("www-authenticate"), response.headers.get("content-type"),
                body)

    for rest in ("/infer", "", "/ready"):
        before = _master_v2_count(system, http)
        known = answer(f"/v2/models/oip-mlp{rest}", "oip-mlp")  # the model's replica answers (one hop)
        assert _master_v2_count(system, http) == before
        unknown = answer(f"/v2/models/no-such-model{rest}", "no-such-model")  # no application: the master answers
        assert _master_v2_count(system, http) == before + 1
        assert known == unknown
        assert known[:3] == (401, "Bearer", "application/json") and set(known[3]) == {"error", "code", "input"}
        # What the ingress sends the master for a model with no application, asked directly.
        assert answer(f"/models/no-such-model/v2{rest}", "no-such-model") == unknown
    # A version-pinned path (the master forwards it to the replica) answers the same.
    assert answer("/v2/models/oip-mlp/versions/1/infer", "oip-mlp") == answer("/v2/models/no-such-model/infer",
                                                                               "no-such-model")


def test_a_v2_body_over_the_models_limit_is_refused_before_it_is_sent(
    system: System, oip_model: tuple[str, object]
) -> None:
    key, _ = oip_model
    host, port = system.master_url.removeprefix("http://").split(":")
    declared = 16 * 2**20 + 1  # the manifest's default max_body_bytes, plus one
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(f"POST /v2/models/oip-mlp/infer HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert json.loads(body)["error"].startswith("the body (16,777,217 bytes so far) exceeds the limit")
