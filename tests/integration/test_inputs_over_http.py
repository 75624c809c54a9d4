"""Every input kind over every transport on the real stack, and the malformed
and oversized corpus through HTTP.

One model takes an input of each kind and returns a fingerprint of every
array it receives (element count, sum, sum of squares, position-weighted
sum), so equal fingerprints over JSON, multipart and the Open Inference
Protocol mean the replica decoded the same arrays, and equal to the
fingerprint of the arrays decoded here, in the test process, means they are
the right ones.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from seedserve.client import Client, ManagerClient
from seedserve.client.client import _request
from seedserve.client.v2_binary import encode_infer_request
from seedserve.codecs import decode_inputs, parse_manifest
from seedserve.runtime import model_arguments
from tests.conftest import System
from tests.helpers import error_fields, eventually

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent.parent / "data"
NAME = "every-kind"
MANIFEST = {
    "name": NAME,
    "inputs": [
        {"name": "image", "kind": "image", "size": [24, 24], "max_bytes": 300_000},
        {"name": "clip", "kind": "audio", "sample_rate": 8000, "max_seconds": 3},
        {"name": "table", "kind": "tabular", "max_rows": 50, "columns": [
            {"name": "price"}, {"name": "rooms", "type": "int"},
            {"name": "city", "type": "category", "vocabulary": ["paris", "lyon"]}]},
        {"name": "review", "kind": "text", "tokenizer": "utf8_bytes", "max_tokens": 32, "max_length": 200},
        {"name": "x", "kind": "tensor", "shape": [-1, 4], "max_elements": 4000},
        {"name": "graph", "kind": "graph", "node_features": 2, "max_nodes": 100},
        {"name": "rec", "kind": "recommender", "users": {"hash_buckets": 1000},
         "items": {"vocabulary": ["a", "b", "c"]}, "max_items": 10},
    ],
    "outputs": [{"name": "fingerprint"}],
}


class Fingerprint(torch.nn.Module):
    def forward(self, image: torch.Tensor, clip: torch.Tensor, table: torch.Tensor, review: torch.Tensor,
                x: torch.Tensor, graph_x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor,
                user: torch.Tensor, items: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        rows = []
        for part in [image, clip, table, review, x, graph_x, edge_index, batch, user, items, offsets]:
            flat = part.to(torch.float64).flatten()
            position = torch.arange(flat.numel(), dtype=torch.float64)
            count = torch.full([1], float(flat.numel()), dtype=torch.float64)
            rows.append(torch.cat([count, flat.sum().reshape(1), (flat * flat).sum().reshape(1),
                                   (flat * position).sum().reshape(1)]))
        return torch.stack(rows)


def _good_inputs() -> dict[str, Any]:
    return {
        "image": DATA / "image_exif_rotated.jpg",
        "clip": DATA / "speech.wav",
        "table": [{"price": 10.5, "rooms": 3, "city": "lyon"}, {"price": 7.25, "rooms": 1, "city": "paris"}],
        "review": ["great little flat", "noisy, but — close to the station ✓"],
        "x": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
        "graph": [{"x": [[0.5, 1.0], [2.0, -1.0], [0.0, 3.0]], "edge_index": [[0, 1, 2], [1, 2, 0]]},
                  {"x": [[1.0, 1.0], [4.0, 2.0]], "edge_index": [[0], [1]]}],
        "rec": [{"user": "alice", "items": ["a", "c"]}, {"user": 42, "items": ["b", "zzz", "a"]}],
    }


def _fingerprint_here(inputs: dict[str, Any]) -> np.ndarray:
    """The fingerprint of the arrays the codecs produce in this process from the JSON body."""
    manifest = parse_manifest(MANIFEST)
    decoded = decode_inputs(manifest, _request(inputs, {}, "json")["json"])
    with torch.inference_mode():
        return torch.jit.script(Fingerprint())(*model_arguments(manifest, decoded)).numpy()


@pytest.fixture(scope="module")
def every_kind(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    artifact = tmp_path_factory.mktemp("every-kind") / "fingerprint.pt"
    torch.jit.script(Fingerprint()).save(str(artifact))
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        key = manager.register(artifact, MANIFEST)
        with Client(system.master_url, key) as client:
            eventually(lambda: client.predict(NAME, _good_inputs()), timeout_s=90)
            # /v2 goes through the master, which routes once Serve reports the app running.
            eventually(lambda: client.infer(NAME, _good_inputs()), timeout_s=60)
        yield key
        manager.delete_model(NAME)


def test_each_kind_decodes_to_the_same_arrays_over_every_transport(system: System, every_kind: str) -> None:
    inputs = _good_inputs()
    expected = _fingerprint_here(inputs)
    with Client(system.master_url, every_kind) as client:
        over_json = np.array(client.predict(NAME, inputs, transport="json")["fingerprint"])
        over_multipart = np.array(client.predict(NAME, inputs, transport="multipart")["fingerprint"])
        over_oip = client.infer(NAME, inputs)["fingerprint"]
    assert expected.shape == (11, 4) and over_oip.dtype == np.float64
    for fingerprint in (over_json, over_multipart, over_oip):
        np.testing.assert_allclose(fingerprint, expected, rtol=1e-9, atol=1e-9)


def test_every_image_and_audio_format_in_the_corpus_is_served(system: System, every_kind: str) -> None:
    images = ["image.png", "image.jpg", "image_progressive.jpg", "image_cmyk.jpg", "image.webp",
              "image.bmp", "image.gif", "image.tiff"]
    clips = ["audio.flac", "audio.ogg", "audio.mp3", "audio_8bit.wav", "audio_24bit.wav", "audio_32bit.wav",
             "audio_float.wav", "audio_stereo.wav"]
    with Client(system.master_url, every_kind) as client:
        for image, clip in zip(images, clips, strict=True):
            inputs = {**_good_inputs(), "image": DATA / image, "clip": DATA / clip}
            expected = _fingerprint_here(inputs)
            for transport in ("json", "multipart"):
                served = client.predict(NAME, inputs, transport=transport)["fingerprint"]  # type: ignore[arg-type]
                np.testing.assert_allclose(served, expected, rtol=1e-9, err_msg=f"{image} {clip} {transport}")
            np.testing.assert_allclose(client.infer(NAME, inputs)["fingerprint"], expected, rtol=1e-9)


def _big_png() -> bytes:
    noise = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    assert len(buffer.getvalue()) > 300_000
    return buffer.getvalue()


def _long_clip() -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(8000 * 5, np.float32), 8000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# (case, input, bad value, status, error code): one bad input in an otherwise good query.
CORPUS: list[tuple[str, str, Any, int, str]] = [
    ("truncated PNG", "image", DATA / "image_truncated.png", 400, "invalid_input"),
    ("wrong magic bytes", "image", DATA / "image_wrong_magic.png", 415, "unsupported_media_type"),
    ("audio sent as the image", "image", DATA / "speech.wav", 415, "unsupported_media_type"),
    ("bomb header 100k x 100k", "image", DATA / "image_bomb_header.png", 413, "input_too_large"),
    ("bomb header 8k x 8k", "image", DATA / "image_bomb_8k.png", 413, "input_too_large"),
    ("image over max_bytes", "image", _big_png(), 413, "input_too_large"),
    ("truncated WAV", "clip", DATA / "audio_truncated.wav", 400, "invalid_input"),
    ("WAV with wrong magic", "clip", DATA / "audio_wrong_magic.wav", 400, "invalid_input"),
    ("image sent as the clip", "clip", DATA / "image.png", 415, "unsupported_media_type"),
    ("clip over max_seconds", "clip", _long_clip(), 413, "input_too_large"),
    ("unknown column", "table", [{"price": 1.0, "rooms": 1, "city": "lyon", "floor": 3}], 400, "invalid_input"),
    ("missing cell", "table", [{"price": 1.0, "city": "lyon"}], 400, "invalid_input"),
    ("category outside the vocabulary", "table", [{"price": 1.0, "rooms": 1, "city": "rome"}], 400, "invalid_input"),
    ("too many rows", "table", [{"price": 1.0, "rooms": 1, "city": "lyon"}] * 51, 413, "input_too_large"),
    ("text over max_length", "review", "x" * 201, 413, "input_too_large"),
    ("wrong tensor width", "x", [[1.0, 2.0, 3.0]], 400, "invalid_input"),
    ("NaN in a tensor", "x", np.array([[np.nan, 0, 0, 0]], np.float32), 400, "invalid_input"),
    ("non-numbers in a tensor", "x", [["a", "b", "c", "d"]], 400, "invalid_input"),
    ("tensor over max_elements", "x", np.zeros((1001, 4), np.float32), 413, "input_too_large"),
    ("edge to a missing node", "graph", {"x": [[0.0, 0.0]], "edge_index": [[0], [5]]}, 400, "invalid_input"),
    ("fractional node index", "graph", {"x": [[0.0, 0.0], [1.0, 1.0]], "edge_index": [[0], [0.5]]}, 400,
     "invalid_input"),
    ("graph over max_nodes", "graph", {"x": [[0.0, 0.0]] * 101, "edge_index": [[0], [1]]}, 413, "input_too_large"),
    ("a float as an id", "rec", {"user": 1.5, "items": ["a"]}, 400, "invalid_input"),
    ("too many items", "rec", {"user": 1, "items": ["a"] * 11}, 413, "input_too_large"),
]


def _body(transport: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """What the SDK would send, as httpx arguments."""
    if transport == "oip":
        content, headers = encode_infer_request(inputs)
        return {"content": content, "headers": headers}
    return _request(inputs, {}, transport)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["json", "multipart", "oip"])
def test_the_malformed_corpus_gets_its_documented_4xx_and_breaks_nothing(
    system: System, every_kind: str, http: httpx.Client, transport: str
) -> None:
    auth = {"Authorization": f"Bearer {every_kind}"}
    path = f"/v2/models/{NAME}/infer" if transport == "oip" else f"/models/{NAME}/predict"
    failures = []
    for case, name, value, status, code in CORPUS:
        kwargs = _body(transport, {**_good_inputs(), name: value})
        kwargs["headers"] = {**kwargs.get("headers", {}), **auth}
        response = http.post(system.master_url + path, **kwargs)
        error = error_fields(response)  # on /v2 in the Open Inference Protocol's shape
        if (response.status_code, error.get("code"), error.get("input")) != (status, code, name):
            failures.append(f"{case}: {response.status_code} {response.text[:300]}")
        elif not error.get("message", "").startswith(f"input {name!r}"):
            failures.append(f"{case}: the message does not name the input: {error.get('message')}")
    assert not failures, "\n".join(failures)
    # The model still answers a good query with the right arrays.
    expected = _fingerprint_here(_good_inputs())
    with Client(system.master_url, every_kind) as client:
        np.testing.assert_allclose(client.predict(NAME, _good_inputs(), transport="multipart")["fingerprint"], expected)


def test_malformed_bodies_and_queries_get_4xx_over_http(system: System, every_kind: str, http: httpx.Client) -> None:
    auth = {"Authorization": f"Bearer {every_kind}"}
    url = system.master_url + f"/models/{NAME}/predict"
    good = _request(_good_inputs(), {}, "json")["json"]
    bad_b64 = {**good, "image": {"b64": "not base64!", "mime": "image/png"}}
    surrogate = json.dumps({**good, "review": "ok"}).replace('"ok"', '"\\ud800"').encode()
    cases: dict[str, tuple[dict[str, Any], int, str | None]] = {
        "missing input": ({"json": {k: v for k, v in good.items() if k != "rec"}}, 422, "rec"),
        "unexpected input": ({"json": {**good, "extra": 1}}, 422, "extra"),
        "bad base64": ({"json": bad_b64}, 400, "image"),
        "lone surrogate in text": ({"content": surrogate, "headers": {"content-type": "application/json"}}, 400,
                                   "review"),
        "not JSON": ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, None),
        "invalid UTF-8": ({"content": b'{"x": "\xff\xfe"}', "headers": {"content-type": "application/json"}}, 400,
                          None),
        "a JSON list": ({"json": [1, 2, 3]}, 400, None),
        "a number as text": ({"json": {**good, "review": 12}}, 400, "review"),
        "deep nesting": ({"content": b"[" * 100_000 + b"]" * 100_000, "headers": {"content-type": "application/json"}},
                         400, None),
        "unsupported content type": ({"content": b"x=1", "headers": {"content-type": "text/csv"}}, 415, None),
        # python-multipart reads a body without parts as an empty form.
        "multipart without parts": ({"content": b"--zzz\r\nnonsense",
                                     "headers": {"content-type": "multipart/form-data; boundary=zzz"}}, 422, "image"),
        "OIP header length beyond the body": ({"content": b"{}", "headers": {"inference-header-content-length": "99"}},
                                              400, None),
    }
    failures = []
    for case, (kwargs, status, name) in cases.items():
        target = system.master_url + f"/v2/models/{NAME}/infer" if case.startswith("OIP") else url
        kwargs = {**kwargs, "headers": {**kwargs.get("headers", {}), **auth}}
        response = http.post(target, **kwargs)
        error = error_fields(response)
        if response.status_code != status or not error.get("message") or (name and error.get("input") != name):
            failures.append(f"{case}: {response.status_code} {response.text[:300]}")
    assert not failures, "\n".join(failures)
    huge_b64 = base64.b64encode(b"\0" * 200).decode() * 70_000  # ~18.8 MB of JSON, over the 16 MiB default
    too_big = http.post(url, content=json.dumps({"image": {"b64": huge_b64}}).encode(), headers=auth)
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "input_too_large"
