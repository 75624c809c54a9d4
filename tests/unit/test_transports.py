"""Each kind decodes over JSON and multipart to identical arrays: the client's
encoders build the body, the server's payload parser (Starlette's multipart
parser) reads it back, and the codecs decode it."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from starlette.datastructures import Headers

from seedserve.client.client import _request
from seedserve.client.v2_binary import encode_infer_request
from seedserve.codecs import decode_inputs, parse_manifest
from seedserve.codecs.v2_wire import HEADER_LENGTH
from seedserve.deployments._transport import parse_payload
from seedserve.deployments._v2_rest import parse_infer_request

DATA = Path(__file__).parent.parent / "data"

MANIFEST = parse_manifest({
    "name": "all-kinds",
    "inputs": [
        {"name": "x", "kind": "tensor", "shape": [-1, 3]},
        {"name": "img", "kind": "image", "size": [16, 16]},
        {"name": "clip", "kind": "audio", "sample_rate": 8000},
        {"name": "row", "kind": "tabular", "columns": [{"name": "a"}, {"name": "b", "type": "int"}]},
        {"name": "words", "kind": "text", "tokenizer": "utf8_bytes", "max_tokens": 16},
        {"name": "g", "kind": "graph", "node_features": 2},
        {"name": "rec", "kind": "recommender", "users": {"hash_buckets": 10}, "items": {"hash_buckets": 10}},
    ],
    "outputs": [{"name": "y"}],
})


def _decode_over(transport: str, inputs: dict[str, Any]) -> dict[str, Any]:
    kwargs = _request(inputs, {}, transport)  # type: ignore[arg-type]
    request = httpx.Request("POST", "http://test/predict", **kwargs)
    body = request.read()
    headers = Headers(raw=[(k.lower(), v) for k, v in request.headers.raw])  # as ASGI servers pass them
    payload = asyncio.run(parse_payload(headers, body, MANIFEST))
    return decode_inputs(MANIFEST, payload)


def _assert_same(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    else:
        np.testing.assert_array_equal(a, b)


def _inputs(x: np.ndarray, row: dict[str, Any], words: str) -> dict[str, Any]:
    return {
        "x": x,
        "img": DATA / "image.png",
        "clip": DATA / "speech.wav",
        "row": row,
        "words": words,
        "g": {"x": [[0.0, 1.0], [2.0, 3.0]], "edge_index": [[0, 1], [1, 0]]},
        "rec": {"user": 7, "items": [1, 2, 3]},
    }


def _decode_over_oip(inputs: dict[str, Any]) -> dict[str, Any]:
    body, headers = encode_infer_request(inputs)
    payload, _ = parse_infer_request(headers[HEADER_LENGTH], body, MANIFEST)
    return decode_inputs(MANIFEST, payload)


def _image_file(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _wav_file(samples: np.ndarray, rate: int, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)
ids = st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(min_size=1, max_size=8))


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, Any]:
    nodes = draw(st.integers(1, 6))
    edges = draw(st.integers(0, 8))
    return {
        "x": draw(st.lists(st.lists(finite, min_size=2, max_size=2), min_size=nodes, max_size=nodes)),
        "edge_index": draw(st.lists(st.lists(st.integers(0, nodes - 1), min_size=edges, max_size=edges),
                                    min_size=2, max_size=2)),
    }


@st.composite
def queries(draw: st.DrawFn) -> dict[str, Any]:
    """A query with a generated value of every kind: files in several formats,
    batches or single items, integer or string ids."""
    pixels = draw(arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24), st.just(3))))
    samples = draw(arrays(np.float32, st.integers(16, 2000), elements=st.floats(-1, 1, width=32)))
    row = st.fixed_dictionaries({"a": finite, "b": st.integers(-1000, 1000)})
    return {
        "x": draw(arrays(np.float32, st.tuples(st.integers(1, 4), st.just(3)), elements=finite)),
        "img": _image_file(pixels, draw(st.sampled_from(["PNG", "BMP", "TIFF", "JPEG", "WEBP"]))),
        "clip": _wav_file(samples, draw(st.sampled_from([8000, 16000, 22050])),
                          draw(st.sampled_from(["PCM_16", "FLOAT"]))),
        "row": draw(st.one_of(row, st.lists(row, min_size=1, max_size=5))),
        "words": draw(st.one_of(st.text(max_size=40), st.lists(st.text(max_size=40), min_size=1, max_size=4))),
        "g": draw(st.one_of(graphs(), st.lists(graphs(), min_size=1, max_size=3))),
        "rec": draw(st.fixed_dictionaries({"user": ids, "items": st.lists(ids, max_size=6)})),
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(inputs=queries())
def test_every_kind_decodes_identically_over_json_multipart_and_oip_binary(inputs: dict[str, Any]) -> None:
    over_json = _decode_over("json", inputs)
    over_multipart = _decode_over("multipart", inputs)
    over_oip = _decode_over_oip(inputs)
    for name in over_json:
        _assert_same(over_json[name], over_multipart[name])
        _assert_same(over_json[name], over_oip[name])
    # ... and to the right arrays, not merely the same ones.
    np.testing.assert_array_equal(over_json["x"], inputs["x"])
    rows = inputs["row"] if isinstance(inputs["row"], list) else [inputs["row"]]
    np.testing.assert_array_equal(over_json["row"], np.array([[r["a"], r["b"]] for r in rows], np.float32))
    graph_list = inputs["g"] if isinstance(inputs["g"], list) else [inputs["g"]]
    np.testing.assert_array_equal(over_json["g"]["x"],
                                  np.concatenate([np.asarray(g["x"], np.float32) for g in graph_list]))
    assert over_json["g"]["edge_index"].shape[1] == sum(len(g["edge_index"][0]) for g in graph_list)
    assert over_json["rec"]["items"].shape == (len(inputs["rec"]["items"]),)
    texts = inputs["words"] if isinstance(inputs["words"], list) else [inputs["words"]]
    assert over_json["words"].shape == (len(texts), 16)
    assert over_json["img"].shape == (1, 3, 16, 16) and over_json["clip"].ndim == 2


def test_a_batch_of_texts_travels_as_repeated_parts() -> None:
    texts = ["first review", "second, longer review"]
    over_json = _decode_over("json", {**_inputs(np.zeros((1, 3), np.float32), {"a": 1.0, "b": 2}, "x"), "words": texts})
    over_multipart = _decode_over("multipart", {**_inputs(np.zeros((1, 3), np.float32), {"a": 1.0, "b": 2}, "x"),
                                                "words": texts})
    assert over_json["words"].shape == (2, 16)
    np.testing.assert_array_equal(over_json["words"], over_multipart["words"])


def test_large_tensors_travel_as_raw_base64_and_round_trip_exactly() -> None:
    x = np.random.default_rng(0).standard_normal((2000, 3)).astype(np.float32)
    kwargs = _request(_inputs(x, {"a": 1.0, "b": 2}, "hi"), {}, "json")
    assert "b64" in kwargs["json"]["x"]
    np.testing.assert_array_equal(_decode_over("json", _inputs(x, {"a": 1.0, "b": 2}, "hi"))["x"], x)


def _oip_bytes(elements: list[bytes]) -> bytes:
    import struct

    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def test_every_kind_decodes_identically_over_the_open_inference_protocol_binary_extension() -> None:
    import json

    from seedserve.deployments._v2_rest import parse_infer_request

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    inputs = _inputs(x, {"a": 1.5, "b": 2}, "hello")
    native = _decode_over("json", inputs)
    blobs = {
        "x": (x.tobytes(), "FP32", [2, 3]),
        "img": (_oip_bytes([(DATA / "image.png").read_bytes()]), "BYTES", [1]),
        "clip": (_oip_bytes([(DATA / "speech.wav").read_bytes()]), "BYTES", [1]),
        "row": (_oip_bytes([json.dumps({"a": 1.5, "b": 2}).encode()]), "BYTES", [1]),
        "words": (_oip_bytes([b"hello"]), "BYTES", [1]),
        "g": (_oip_bytes([json.dumps(inputs["g"]).encode()]), "BYTES", [1]),
        "rec": (_oip_bytes([json.dumps(inputs["rec"]).encode()]), "BYTES", [1]),
    }
    header = json.dumps({"inputs": [
        {"name": n, "shape": shape, "datatype": dt, "parameters": {"binary_data_size": len(blob)}}
        for n, (blob, dt, shape) in blobs.items()
    ]}).encode()
    body = header + b"".join(blob for blob, _, _ in blobs.values())
    payload, _ = parse_infer_request(str(len(header)), body, MANIFEST)
    over_oip = decode_inputs(MANIFEST, payload)
    for name in native:
        _assert_same(native[name], over_oip[name])


def test_oip_json_form_and_its_errors() -> None:
    import json

    import pytest

    from seedserve.deployments._v2_rest import parse_infer_request
    from seedserve.errors import InvalidInput

    small = parse_manifest({"name": "m", "inputs": [{"name": "x", "shape": [-1, 2]}], "outputs": [{"name": "y"}]})
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}).encode()
    payload, _ = parse_infer_request(None, body, small)
    np.testing.assert_array_equal(decode_inputs(small, payload)["x"], [[1.0, 2.0]])
    cases = {
        "needs 4 elements": {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2]}]},
        "not an OIP datatype": {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FLOAT", "data": [1, 2]}]},
        "unknown input": {"inputs": [{"name": "z", "shape": [1], "datatype": "FP32", "data": [1]}]},
        "needs 'inputs'": {"outputs": []},
        # Found by schemathesis: wrongly typed optional fields were read as if
        # valid (a 500), or echoed against the documented response schema.
        "'parameters' must be an object": {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32",
                                                       "parameters": "binary"}]},
        "request's 'parameters' must be an object": {"inputs": [], "parameters": [1]},
        "'outputs' must be a list": {"inputs": [], "outputs": ["y", 3]},
        "'id' must be a string": {"inputs": [], "id": 5},
    }
    for message, request in cases.items():
        with pytest.raises(InvalidInput, match=message):
            parse_infer_request(None, json.dumps(request).encode(), small)
    with pytest.raises(InvalidInput, match="overruns the body"):
        bad = json.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32",
                                      "parameters": {"binary_data_size": 800}}]}).encode()
        parse_infer_request(str(len(bad)), bad + b"\0" * 8, small)


def test_oip_responses_are_json_or_binary_as_asked() -> None:
    import json

    from seedserve.deployments._v2_rest import encode_infer_response

    y = np.array([[0.5, -1.0]], dtype=np.float32)
    body, headers = encode_infer_response("m", 1, {"y": y}, {"id": "7"})
    decoded = json.loads(body)
    assert decoded["outputs"][0] == {"name": "y", "shape": [1, 2], "datatype": "FP32", "data": [0.5, -1.0]}
    assert decoded["id"] == "7" and decoded["model_version"] == "1"
    body, headers = encode_infer_response("m", 1, {"y": y},
                                          {"outputs": [{"name": "y", "parameters": {"binary_data": True}}]})
    n = int(headers["inference-header-content-length"])
    meta = json.loads(body[:n])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == 8
    np.testing.assert_array_equal(np.frombuffer(body[n:], "<f4").reshape(1, 2), y)


def test_the_sdk_reads_oip_responses_in_both_forms() -> None:
    from seedserve.client.v2_binary import decode_infer_response
    from seedserve.deployments._v2_rest import encode_infer_response

    outputs = {"y": np.array([[0.5, -1.0]], np.float32), "ids": np.array([3, 4], np.int64)}
    for request in ({}, {"parameters": {"binary_data_output": True}}):
        body, headers = encode_infer_response("m", 1, outputs, request)
        decoded = decode_infer_response(httpx.Response(200, content=body, headers=headers))
        assert decoded.keys() == outputs.keys()
        for name, array in outputs.items():
            assert decoded[name].dtype == array.dtype
            np.testing.assert_array_equal(decoded[name], array)
