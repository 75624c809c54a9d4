"""KServe v2 (Open Inference Protocol) bodies for a served model's query:
JSON, and the binary tensor extension, as seedserve's /v2 route and
Triton take them. An image is one BYTES element (base64 text in JSON, the
raw file in binary); a tensor keeps the native query's shape and values."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import numpy as np

from benchmarks._selection import Served, decode_tensor

__all__ = ["V2Body", "v2_binary", "v2_json"]

#: path, body, headers
V2Body = tuple[str, bytes, dict[str, str]]

_DATATYPES = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "int64": "INT64", "int32": "INT32",
              "int16": "INT16", "int8": "INT8", "uint8": "UINT8", "bool": "BOOL"}


def _tensors(served: Served, image_shape: list[int]) -> list[tuple[str, list[int], str, bytes | np.ndarray]]:
    """Each input as (name, shape, datatype, raw file bytes or an array)."""
    body = json.loads(served.body)
    tensors: list[tuple[str, list[int], str, bytes | np.ndarray]] = []
    for spec in served.manifest["inputs"]:
        value = body[spec["name"]]
        if spec.get("kind", "tensor") == "image":
            tensors.append((spec["name"], image_shape, "BYTES", base64.b64decode(value["b64"])))
        else:
            array = decode_tensor(value, spec).astype(spec.get("dtype", "float32"))
            tensors.append((spec["name"], list(array.shape), _DATATYPES[array.dtype.name], array))
    return tensors


def v2_json(served: Served, image_shape: list[int]) -> V2Body:
    """The v2 JSON form: ``data`` flat numbers, an image's base64 text as its one BYTES element."""
    inputs: list[dict[str, Any]] = []
    for name, shape, datatype, value in _tensors(served, image_shape):
        data = [base64.b64encode(value).decode()] if isinstance(value, bytes) else value.ravel().tolist()
        inputs.append({"name": name, "shape": shape, "datatype": datatype, "data": data})
    return (f"/v2/models/{served.manifest['name']}/infer", json.dumps({"inputs": inputs}).encode(),
            {"Content-Type": "application/json"})


def v2_binary(served: Served, image_shape: list[int]) -> V2Body:
    """The binary extension: a JSON header, then each input's raw bytes (BYTES length-prefixed); binary outputs."""
    inputs: list[dict[str, Any]] = []
    blobs = []
    for name, shape, datatype, value in _tensors(served, image_shape):
        blob = struct.pack("<I", len(value)) + value if isinstance(value, bytes) else value.tobytes()
        inputs.append({"name": name, "shape": shape, "datatype": datatype,
                       "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    outputs = [{"name": spec["name"], "parameters": {"binary_data": True}} for spec in served.manifest["outputs"]]
    header = json.dumps({"inputs": inputs, "outputs": outputs}).encode()
    return (f"/v2/models/{served.manifest['name']}/infer", header + b"".join(blobs),
            {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))})
