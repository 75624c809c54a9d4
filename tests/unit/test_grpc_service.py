"""The gRPC service's pure parts: requests laid out as /v2's binary form,
answers read back, errors mapped to gRPC codes, applications chosen."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from seedserve.cluster.environment import BrokenEnvironment, check_serve_imports, serve_import_problem
from seedserve.codecs import Manifest
from seedserve.deployments._v2_rest import parse_infer_request
from seedserve.errors import InvalidInput, Overloaded
from seedserve.grpc import grpc_predict_v2_pb2 as pb
from seedserve.grpc._convert import infer_request_body, infer_response, metadata_response
from seedserve.grpc._routes import App, applications, route
from seedserve.grpc._status import error_details, grpc_status, local_error

MANIFEST = Manifest.model_validate({
    "name": "m", "inputs": [{"name": "x", "kind": "tensor", "dtype": "float32", "shape": [-1, 2]},
                            {"name": "t", "kind": "text"}],
    "outputs": [{"name": "y"}]})


def _request() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m", id="q7")
    request.outputs.add(name="y")
    return request


def test_typed_contents_reach_the_v2_parser_as_the_same_arrays() -> None:
    request = _request()
    request.inputs.add(name="x", datatype="FP32", shape=[2, 2]).contents.fp32_contents.extend([1, 2, 3, 4])
    request.inputs.add(name="t", datatype="BYTES", shape=[2]).contents.bytes_contents.extend([b"a", "é".encode()])
    payload, parsed = parse_infer_request(*infer_request_body(request), MANIFEST)
    np.testing.assert_array_equal(payload["x"], np.array([[1, 2], [3, 4]], np.float32))
    assert payload["t"] == ["a", "é"] and parsed["id"] == "q7"
    assert parsed["outputs"] == [{"name": "y", "parameters": {"binary_data": True}}]


def test_raw_contents_pass_as_they_came() -> None:
    request = _request()
    request.inputs.add(name="x", datatype="FP32", shape=[1, 2])
    request.raw_input_contents.append(np.array([5, 6], "<f4").tobytes())
    payload, _ = parse_infer_request(*infer_request_body(request), MANIFEST)
    np.testing.assert_array_equal(payload["x"], [[5, 6]])


@pytest.mark.parametrize(("build", "words"), [
    (lambda r: r.inputs.add(name="x", datatype="FP32", shape=[1, 2]).contents.fp32_contents.extend([1]),
     "input 'x': shape [1, 2] needs 2 elements, contents.fp32_contents has 1"),
    (lambda r: r.inputs.add(name="x", datatype="FP16", shape=[1, 2]),
     "input 'x': FP16 has no typed contents; send it in raw_input_contents"),
    (lambda r: r.inputs.add(name="x", datatype="INT8", shape=[1, 2]).contents.int_contents.extend([1, 300]),
     "input 'x': contents.int_contents holds a value outside INT8"),
    (lambda r: r.inputs.add(name="x", datatype="FP32", shape=[-1, 2]),
     "input 'x': 'shape' must be a list of non-negative integers"),
    (lambda r: (r.inputs.add(name="x", datatype="FP32", shape=[1, 2]), r.inputs.add(name="t", datatype="BYTES"),
                r.raw_input_contents.append(b"")),
     "raw_input_contents has 1 entries for 2 inputs"),
])
def test_malformed_requests_are_refused_naming_what_is_wrong(build: object, words: str) -> None:
    request = _request()
    build(request)  # type: ignore[operator]
    with pytest.raises(InvalidInput) as caught:
        infer_request_body(request)
    assert words in caught.value.message


def test_binary_answers_become_raw_output_contents() -> None:
    header = json.dumps({"model_name": "m", "model_version": "3", "id": "q", "outputs": [
        {"name": "y", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
        {"name": "z", "shape": [1], "datatype": "INT64", "data": [7]}]}).encode()
    body = header + np.array([1.5, 2.5], "<f4").tobytes()
    response = infer_response({"inference-header-content-length": str(len(header))}, body)
    assert (response.model_name, response.model_version, response.id) == ("m", "3", "q")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [("y", "FP32", [1, 2]),
                                                                                ("z", "INT64", [1])]
    assert response.raw_output_contents[0] == np.array([1.5, 2.5], "<f4").tobytes()
    assert response.raw_output_contents[1] == struct.pack("<q", 7)


def test_metadata_keeps_names_datatypes_and_shapes() -> None:
    meta = metadata_response(json.dumps({"name": "m", "versions": ["2"], "platform": "pytorch_torchscript",
                                         "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
                                         "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]}).encode())
    assert meta.versions == ["2"] and list(meta.inputs[0].shape) == [-1, 2] and meta.outputs[0].name == "y"


@pytest.mark.parametrize(("status", "code"), [
    (400, grpc.StatusCode.INVALID_ARGUMENT), (401, grpc.StatusCode.UNAUTHENTICATED),
    (404, grpc.StatusCode.NOT_FOUND), (413, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (422, grpc.StatusCode.INVALID_ARGUMENT), (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (503, grpc.StatusCode.UNAVAILABLE), (504, grpc.StatusCode.DEADLINE_EXCEEDED), (500, grpc.StatusCode.INTERNAL),
    (418, grpc.StatusCode.INVALID_ARGUMENT), (502, grpc.StatusCode.INTERNAL),
])
def test_http_statuses_map_to_grpc_codes(status: int, code: grpc.StatusCode) -> None:
    assert grpc_status(status) == code


@pytest.mark.parametrize("body", [
    {"error": {"code": "invalid_input", "message": "input 'x': bad", "input": "x"}},
    {"error": "input 'x': bad", "code": "invalid_input", "input": "x"},
])
def test_both_error_bodies_give_the_message_and_trailers(body: dict[str, object]) -> None:
    code, message, trailers = error_details(400, {"content-type": "application/json"}, json.dumps(body).encode())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message == "input 'x': bad"
    assert dict(trailers) == {"seedserve-error-code": "invalid_input", "seedserve-error-input": "x"}


def test_local_errors_carry_retry_after() -> None:
    code, message, trailers = local_error(Overloaded("full; retry", retry_after_s=2))
    assert code == grpc.StatusCode.UNAVAILABLE and message == "full; retry"
    assert dict(trailers)["retry-after"] == "2"


def test_routes_pick_the_endpoint_or_the_version_application() -> None:
    apps = applications({"applications": {
        "master": {"status": "RUNNING"},
        "model-m": {"status": "RUNNING", "deployed_app_config": {"args": {"name": "m", "version": 2}}},
        "model-m.v1": {"status": "RUNNING", "deployed_app_config": {"args": {"name": "m", "version": 1}}},
    }})
    assert apps == {"model-m": App("RUNNING", 2), "model-m.v1": App("RUNNING", 1)}
    assert [route(apps, "m", v) for v in ("", "2", "1", "9", "x")] == [
        "model-m", "model-m", "model-m.v1", "model-m.v9", "model-m.v-1"]


def test_an_application_updating_or_scaling_with_a_running_replica_is_still_routed() -> None:
    replica = {"state": "RUNNING"}
    apps = applications({"applications": {
        "model-up": {"status": "DEPLOYING", "deployments": {"D": {"replicas": [replica, {"state": "STARTING"}]}}},
        "model-new": {"status": "DEPLOYING", "deployments": {"D": {"replicas": [{"state": "STARTING"}]}}},
        "model-ok": {"status": "RUNNING", "deployments": {"D": {"replicas": [replica]}}},
    }})
    assert {name: app.routable for name, app in apps.items()} == {"model-up": True, "model-new": False,
                                                                  "model-ok": True}
    assert apps["model-up"].replicas == 1


def test_a_serve_that_cannot_import_is_reported_with_its_cause(tmp_path: Path) -> None:
    # A grpc_reflection that fails as one generated for a newer protobuf does.
    fake = tmp_path / "grpc_reflection"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('simulated: generated for protobuf 7.35, runtime is 6.33')\n")
    env = {"PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parents[2]}", "PATH": "/usr/bin:/bin"}
    assert "simulated: generated for protobuf 7.35" in (serve_import_problem(sys.executable, env) or "")
    with pytest.raises(BrokenEnvironment) as caught:
        check_serve_imports(sys.executable, env)
    assert "Ray Serve cannot be imported" in str(caught.value) and "protobuf < 7" in str(caught.value)


def test_seedserve_up_prints_the_cause_and_starts_nothing(tmp_path: Path) -> None:
    import subprocess

    fake = tmp_path / "shadow" / "grpc_reflection"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('simulated: generated for protobuf 7.35, runtime is 6.33')\n")
    env = {"PYTHONPATH": f"{fake.parent}:{Path(__file__).resolve().parents[2]}", "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path), "SEEDSERVE_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run([str(Path(sys.executable).parent / "seedserve"), "up"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Ray Serve cannot be imported" in result.stderr
    assert "simulated: generated for protobuf 7.35" in result.stderr
    assert not (tmp_path / "data").exists()  # nothing started, nothing written
