"""Open Inference Protocol v2 on the real stack: server and model metadata,
readiness, and inference in the JSON form and with the binary extension."""

from __future__ import annotations

import json
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
