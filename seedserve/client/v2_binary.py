"""Queries in the Open Inference Protocol's binary form, and its responses
back to numpy arrays.

Each input becomes one OIP tensor whose data follows the JSON header (the
binary data extension), so files and arrays travel without base64:

- files (bytes, ``Path``, PIL images, :class:`File`), one or a list -> ``BYTES``
  elements holding the files;
- strings, one or a list -> ``BYTES`` elements in UTF-8;
- numpy arrays, torch tensors and nested lists of numbers -> a numeric tensor
  in its own datatype (the server casts it to the declared one);
- anything else (records, column dicts, graphs, recommender requests) ->
  ``BYTES`` elements holding JSON, one per item of a list.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np

from seedserve.client.encoders import _file, _is_file, encode_value
from seedserve.codecs.v2_wire import DATATYPES, DTYPE_DATATYPES, HEADER_LENGTH, pack_bytes

__all__ = ["encode_infer_request", "decode_infer_response"]


def encode_infer_request(inputs: dict[str, Any], *, request_id: str = "") -> tuple[bytes, dict[str, str]]:
    """The body and headers of a binary ``/v2/models/{name}/infer`` request
    that asks for every output in binary."""
    tensors, blobs = [], []
    for name, value in inputs.items():
        datatype, shape, blob = _tensor(value)
        tensors.append({"name": name, "shape": shape, "datatype": datatype,
                        "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    header = json.dumps({"id": request_id, "inputs": tensors, "parameters": {"binary_data_output": True}}).encode()
    headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return header + b"".join(blobs), headers


def _tensor(value: Any) -> tuple[str, list[int], bytes]:
    if _is_file(value) or (isinstance(value, list) and value and all(_is_file(v) for v in value)):
        files = value if isinstance(value, list) else [value]
        return "BYTES", [len(files)], pack_bytes(_file(f).data for f in files)
    if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
        texts = [value] if isinstance(value, str) else value
        return "BYTES", [len(texts)], pack_bytes(t.encode("utf-8") for t in texts)
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = _numeric(value)
    if array is not None:
        little = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False))
        return DTYPE_DATATYPES[array.dtype.name], list(array.shape), little.tobytes()
    items = value if isinstance(value, list) else [value]
    return "BYTES", [len(items)], pack_bytes(json.dumps(encode_value(item)).encode() for item in items)


def _numeric(value: Any) -> np.ndarray | None:
    """``value`` as a numeric array, or None when it is structured data."""
    if isinstance(value, np.ndarray):
        if value.dtype.name not in DTYPE_DATATYPES:
            raise TypeError(f"arrays of {value.dtype} have no Open Inference Protocol datatype")
        return value
    if isinstance(value, list) and value and _all_numbers(value):
        array = np.asarray(value)
        # Mixed or ragged lists go as JSON, for the server to say what is wrong.
        return array if array.dtype.name in DTYPE_DATATYPES else None
    return None


def _all_numbers(value: list[Any]) -> bool:
    first = value
    while isinstance(first, list) and first:
        first = first[0]
    return isinstance(first, (int, float, np.number)) and not isinstance(first, bool)


def decode_infer_response(response: httpx.Response) -> dict[str, np.ndarray]:
    """Outputs by name from an infer response, binary or JSON."""
    content = response.content
    length = response.headers.get(HEADER_LENGTH)
    split = int(length) if length is not None else len(content)
    header, binary = json.loads(content[:split]), content[split:]
    outputs, offset = {}, 0
    for tensor in header["outputs"]:
        dtype = np.dtype(DATATYPES[tensor["datatype"]])
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            wire = np.frombuffer(binary[offset : offset + size], dtype=dtype.newbyteorder("<"))
            array = wire.astype(dtype)
            offset += size
        else:
            array = np.asarray(tensor["data"], dtype=dtype)
        outputs[tensor["name"]] = array.reshape(tensor["shape"])
    return outputs
