"""The KServe v2 gRPC service on the real stack, driven by Triton's own
client (tritonclient.grpc) as users run it: health, server and model
metadata, inference with raw and typed contents equal to the model in
process and to /v2 over HTTP, an image as BYTES, and each error as
tritonclient's InferenceServerException with gRPC's code and seedserve's
message."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import torch
import tritonclient.grpc as triton
from PIL import Image
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from seedserve.client import ManagerClient
from tests.conftest import System
from tests.helpers import MLP_MANIFEST, eventually, make_mlp, save_torchscript

pytestmark = pytest.mark.integration

MLP = "grpc-mlp"
IMAGE = "grpc-image"


class ChannelMeans(torch.nn.Module):
    """Each image's mean per channel: what the image codec handed the model."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.mean(dim=(2, 3))


@pytest.fixture(scope="module")
def models(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The MLP (a body limit of 4 KiB) and an image model, registered together so they deploy together."""
    folder = tmp_path_factory.mktemp("grpc")
    mlp = make_mlp(seed=5)
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        keys = {
            MLP: manager.register(save_torchscript(mlp, folder / "mlp.pt"),
                                  {**MLP_MANIFEST, "name": MLP, "max_body_bytes": 4096}),
            IMAGE: manager.register(save_torchscript(ChannelMeans(), folder / "image.pt"), {
                "name": IMAGE, "inputs": [{"name": "image", "kind": "image", "size": [8, 8]}],
                "outputs": [{"name": "means"}]}),
        }
        client = triton.InferenceServerClient(system.grpc_target)
        for name, key in keys.items():
            eventually(lambda name=name, key=key: _assert(client.is_model_ready(name, headers=_auth(key))),
                       timeout_s=120)
            # The tests compare with /v2 over HTTP too, which the master routes from its own view of Serve.
            eventually(lambda name=name, key=key: _assert(
                           httpx.get(f"{system.master_url}/v2/models/{name}/ready", timeout=10,
                                     headers={"Authorization": f"Bearer {key}"}).status_code == 200),
                       timeout_s=60)
        yield {"keys": keys, "mlp": mlp, "client": client}
        client.close()
        manager.delete_model(MLP)
        manager.delete_model(IMAGE)


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _assert(condition: bool) -> None:
    assert condition


def _x(rows: int = 3) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((rows, 16)).astype(np.float32)


def test_health_and_server_and_model_metadata(system: System, models: dict[str, Any]) -> None:
    client: triton.InferenceServerClient = models["client"]
    assert client.is_server_live() and client.is_server_ready()
    server = client.get_server_metadata()
    assert server.name == "seedserve" and server.version
    meta = client.get_model_metadata(MLP, headers=_auth(models["keys"][MLP]), as_json=True)
    assert meta["name"] == MLP and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "16"]}]
    assert [o["name"] for o in meta["outputs"]] == ["y"]
    image = client.get_model_metadata(IMAGE, headers=_auth(models["keys"][IMAGE]), as_json=True)
    assert image["inputs"][0]["name"] == "image" and image["inputs"][0]["datatype"] == "BYTES"


def test_raw_and_typed_contents_give_the_in_process_outputs_and_those_of_v2_json(
    system: System, models: dict[str, Any], http: httpx.Client
) -> None:
    key, x = models["keys"][MLP], _x()
    expected = models["mlp"](torch.from_numpy(x)).detach().numpy()
    # raw_input_contents / raw_output_contents: what tritonclient sends and reads
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = models["client"].infer(MLP, [tensor], request_id="r1", headers=_auth(key),
                                    outputs=[triton.InferRequestedOutput("y")])
    raw = result.as_numpy("y")
    assert result.get_response().id == "r1" and result.get_response().model_version == "1"
    np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-6)
    # typed contents (fp32_contents), through tritonclient's generated stub
    request = service_pb2.ModelInferRequest(model_name=MLP)
    typed_input = request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    typed_input.contents.fp32_contents.extend(x.ravel().tolist())
    with grpc.insecure_channel(system.grpc_target) as channel:
        typed = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            request, metadata=tuple(_auth(key).items()), timeout=30)
    assert typed.outputs[0].name == "y" and list(typed.outputs[0].shape) == [3, 4]
    assert typed.outputs[0].datatype == "FP32"
    np.testing.assert_array_equal(np.frombuffer(typed.raw_output_contents[0], "<f4").reshape(3, 4), raw)
    # /v2 over HTTP in the JSON form answers the same numbers
    v2 = http.post(f"{system.master_url}/v2/models/{MLP}/infer", headers={"Authorization": f"Bearer {key}"}, json={
        "inputs": [{"name": "x", "shape": [3, 16], "datatype": "FP32", "data": x.ravel().tolist()}]})
    assert v2.status_code == 200, v2.text
    np.testing.assert_array_equal(np.array(v2.json()["outputs"][0]["data"], dtype=np.float32).reshape(3, 4), raw)


def test_an_image_as_bytes_is_decoded_as_over_http(system: System, models: dict[str, Any], http: httpx.Client) -> None:
    pixels = np.random.default_rng(3).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    tensor = triton.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([buffer.getvalue()], dtype=np.object_))
    key = models["keys"][IMAGE]
    means = models["client"].infer(IMAGE, [tensor], headers=_auth(key)).as_numpy("means")
    np.testing.assert_allclose(means, [pixels.reshape(-1, 3).mean(axis=0) / 255], rtol=1e-5)
    header = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(buffer.getvalue()) + 4}}]}).encode()
    body = header + len(buffer.getvalue()).to_bytes(4, "little") + buffer.getvalue()
    v2 = http.post(f"{system.master_url}/v2/models/{IMAGE}/infer", content=body, headers={
        "Authorization": f"Bearer {key}", "Inference-Header-Content-Length": str(len(header))})
    assert v2.status_code == 200, v2.text
    np.testing.assert_array_equal(np.array(v2.json()["outputs"][0]["data"], dtype=np.float32).reshape(1, 3), means)


def _fails(
    models: dict[str, Any], model: str, inputs: list[triton.InferInput], headers: dict[str, str]
) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        models["client"].infer(model, inputs, headers=headers)
    return caught.value


def _input(name: str, array: np.ndarray, datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def test_a_wrong_key_and_an_unknown_model_hear_the_same_answer(models: dict[str, Any]) -> None:
    x = [_input("x", _x(1), "FP32")]
    wrong = _fails(models, MLP, x, {"authorization": "Bearer sk_wrong"})
    unknown = _fails(models, "grpc-no-such-model", x, _auth(models["keys"][MLP]))
    missing = _fails(models, MLP, x, {})
    assert wrong.status() == unknown.status() == missing.status() == "StatusCode.UNAUTHENTICATED"
    assert wrong.message() == f"no model named {MLP!r} accepts this key; check the model name and the key"
    assert unknown.message() == wrong.message().replace(MLP, "grpc-no-such-model")
    assert "Authorization: Bearer <key>" in missing.message()
    # ModelReady and ModelMetadata keep the same secret
    for call in (models["client"].is_model_ready, models["client"].get_model_metadata):
        with pytest.raises(InferenceServerException) as caught:
            call("grpc-no-such-model", headers=_auth(models["keys"][MLP]))
        assert caught.value.status() == "StatusCode.UNAUTHENTICATED"


@pytest.mark.parametrize(("case", "inputs", "code", "words"), [
    ("bad shape", [_input("x", np.zeros((1, 15), np.float32), "FP32")], "INVALID_ARGUMENT", "'x'"),
    ("bytes for a tensor", [_input("x", np.array([b"1"], dtype=np.object_), "BYTES")], "INVALID_ARGUMENT",
     "input 'x': a tensor input takes a numeric datatype, not BYTES"),
    ("unknown input", [_input("z", np.zeros((1, 16), np.float32), "FP32")], "INVALID_ARGUMENT", "unknown input 'z'"),
    ("over max_body_bytes", [_input("x", np.zeros((100, 16), np.float32), "FP32")], "RESOURCE_EXHAUSTED",
     "exceeds the limit of 4,096 bytes"),
])
def test_bad_input_is_refused_with_its_code_and_seedserve_message(
    models: dict[str, Any], case: str, inputs: list[triton.InferInput], code: str, words: str
) -> None:
    error = _fails(models, MLP, inputs, _auth(models["keys"][MLP]))
    assert error.status() == f"StatusCode.{code}", (case, error)
    assert words in (error.message() or ""), (case, error.message())


def test_an_unknown_datatype_in_typed_contents_is_refused_naming_the_input(
    system: System, models: dict[str, Any]
) -> None:
    request = service_pb2.ModelInferRequest(model_name=MLP)
    request.inputs.add(name="x", datatype="FP99", shape=[1, 16]).contents.fp32_contents.extend([0.0] * 16)
    with grpc.insecure_channel(system.grpc_target) as channel, pytest.raises(grpc.RpcError) as caught:
        service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            request, metadata=tuple(_auth(models["keys"][MLP]).items()), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "input 'x': datatype 'FP99' is not an OIP datatype"
    trailers = dict(caught.value.trailing_metadata() or ())
    assert trailers.get("seedserve-error-input") == "x" and trailers.get("seedserve-error-code") == "invalid_input"


def test_the_grpc_process_holds_no_secret(system: System, models: dict[str, Any]) -> None:
    port = system.env["SEEDSERVE_GRPC_PORT"]
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"seedserve.grpc" in cmdline and any(arg.endswith(f":{port}".encode()) for arg in cmdline):
                found.append((b" ".join(cmdline), (proc / "environ").read_bytes()))
        except OSError:
            continue
    assert found, "no gRPC service process found"
    secrets = [system.admin_token, system.metrics_token, system.mongo_uri]
    for cmdline, environ in found:
        for secret in secrets:
            assert secret.encode() not in cmdline and secret.encode() not in environ
        assert b"SEEDSERVE_MONGO_URI" not in environ and b"SEEDSERVE_ADMIN_TOKEN" not in environ
