"""The Open Inference Protocol (v2) REST form, with its binary tensor data
extension, to and from seedserve's payloads.

Request: ``{"inputs": [{"name", "shape", "datatype", "data" | parameters.binary_data_size}],
"outputs": [{"name", "parameters": {"binary_data": bool}}], "parameters": {...}}``.
With the binary extension the body is that JSON (its length in the
``Inference-Header-Content-Length`` header) followed by each binary input in
order; ``BYTES`` elements are 4-byte little-endian lengths and their bytes.

Mapping to input kinds, by each kind's wire form (``Kind.wire``): ``tensor``
kinds (``tensor``) take numeric tensors of their dtype; ``file`` kinds
(``image``, ``audio``) take ``BYTES`` elements that are files (in JSON,
base64 strings); ``text`` kinds take ``BYTES`` UTF-8 strings; ``json`` kinds
(``tabular``, ``graph``, ``recommender``) take ``BYTES`` elements holding
their native JSON value.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from typing import Any

import numpy as np

from seedserve.codecs import Manifest
from seedserve.codecs.registry import REGISTRY, Kind, kinds_of
from seedserve.codecs.v2_wire import DATATYPES, DTYPE_DATATYPES, HEADER_LENGTH
from seedserve.deployments._query import load_json
from seedserve.errors import InputMismatch, InvalidInput

__all__ = ["EXTENSIONS", "encode_infer_response", "oip_datatype", "oip_output_metadata", "oip_tensor_metadata",
           "parse_infer_request"]

#: The protocol's extensions seedserve serves, as ``GET /v2`` lists them
#: (docs/protocols.md says what each covers).
EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics"]


def parse_infer_request(header_length: str | None, body: bytes,
                        manifest: Manifest) -> tuple[dict[str, Any], dict[str, Any]]:
    """The payload (input name -> wire value) and the request JSON itself."""
    json_part, binary = _split(header_length, body)
    request = load_json(json_part, "the inference request")
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise InvalidInput("the inference request needs 'inputs', a list of tensors")
    _check_request_fields(request)
    kinds = kinds_of(manifest.inputs)
    payload: dict[str, Any] = {}
    offset = 0
    for tensor in request["inputs"]:
        name, shape, datatype = _tensor_header(tensor)
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidInput(f"input {name!r}: binary_data_size {size} overruns the body", input=name)
            data: Any = binary[offset : offset + size]
            offset += size
        elif "data" in tensor:
            data = tensor["data"]
        else:
            raise InvalidInput(f"input {name!r}: needs 'data' or parameters.binary_data_size", input=name)
        if name not in kinds:
            raise InputMismatch(f"unknown input {name!r}; this model takes {sorted(kinds)}", input=name)
        payload[name] = _wire_value(name, kinds[name], shape, datatype, data, size is not None)
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data belong to no input")
    return payload, request


def _check_request_fields(request: dict[str, Any]) -> None:
    """The optional fields, typed as the protocol has them, before anything reads them."""
    if request.get("id") is not None and not isinstance(request["id"], str):
        raise InvalidInput("the inference request's 'id' must be a string")
    if request.get("parameters") is not None and not isinstance(request["parameters"], dict):
        raise InvalidInput("the inference request's 'parameters' must be an object")
    outputs = request.get("outputs")
    if outputs is not None and not (
        isinstance(outputs, list)
        and all(isinstance(o, dict) and isinstance(o.get("name"), str)
                and (o.get("parameters") is None or isinstance(o["parameters"], dict)) for o in outputs)
    ):
        raise InvalidInput("the inference request's 'outputs' must be a list of {name, parameters?} objects")
    for tensor in request["inputs"]:
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidInput(f"input {tensor.get('name')!r}: 'parameters' must be an object",
                               input=tensor.get("name") if isinstance(tensor.get("name"), str) else None)


def _split(header_length: str | None, body: bytes) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise InvalidInput(f"Inference-Header-Content-Length {header_length!r} "
                           f"does not fit a body of {len(body)} bytes")
    n = int(header_length)
    return body[:n], body[n:]


def _tensor_header(tensor: Any) -> tuple[str, list[int], str]:
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise InvalidInput("each input needs a 'name'")
    name = tensor["name"]
    shape, datatype = tensor.get("shape"), tensor.get("datatype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InvalidInput(f"input {name!r}: 'shape' must be a list of non-negative integers", input=name)
    if datatype not in DATATYPES and datatype != "BYTES":
        raise InvalidInput(f"input {name!r}: datatype {datatype!r} is not an OIP datatype", input=name)
    return name, shape, datatype


def _wire_value(name: str, kind: Kind, shape: list[int], datatype: str, data: Any, binary: bool) -> Any:
    if kind.wire == "tensor":
        if datatype == "BYTES":
            raise InvalidInput(f"input {name!r}: a {kind.name} input takes a numeric datatype, not BYTES", input=name)
        return _numeric(name, shape, datatype, data, binary)
    if datatype != "BYTES":
        raise InvalidInput(f"input {name!r}: a {kind.name} input takes datatype BYTES, got {datatype}", input=name)
    elements = _bytes_elements(name, data, binary, math.prod(shape))
    if kind.wire == "file":
        return [e if isinstance(e, bytes) else _b64(name, e) for e in elements]
    texts = [e.decode("utf-8") if isinstance(e, bytes) else e for e in elements]
    if kind.wire == "json":
        values = [load_json(t, f"input {name!r}: a BYTES element (each must hold JSON)", input=name) for t in texts]
        return values[0] if len(values) == 1 else values
    return texts


def _numeric(name: str, shape: list[int], datatype: str, data: Any, binary: bool) -> np.ndarray:
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    count = math.prod(shape)
    if binary:
        if len(data) != count * dtype.itemsize:
            raise InvalidInput(f"input {name!r}: shape {shape} of {datatype} needs {count * dtype.itemsize} bytes, got "
                               f"{len(data)}", input=name)
        return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    try:
        array = np.asarray(data, dtype=dtype.newbyteorder("="))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"input {name!r}: 'data' is not {datatype} numbers", input=name) from exc
    if array.size != count:
        raise InvalidInput(f"input {name!r}: shape {shape} needs {count} elements, 'data' has {array.size}", input=name)
    return array.reshape(shape)


def _bytes_elements(name: str, data: Any, binary: bool, count: int) -> list[Any]:
    if not binary:
        items = data if isinstance(data, list) else [data]
        flat = _flatten(items)
        if not all(isinstance(e, str) for e in flat):
            raise InvalidInput(f"input {name!r}: BYTES data must be strings", input=name)
        return flat
    elements, offset = [], 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise InvalidInput(f"input {name!r}: a BYTES element's length prefix is cut short", input=name)
        (length,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if offset + length > len(data):
            raise InvalidInput(f"input {name!r}: a BYTES element overruns its data", input=name)
        elements.append(bytes(data[offset : offset + length]))
        offset += length
    if len(elements) != count:
        raise InvalidInput(f"input {name!r}: shape says {count} elements, the data holds {len(elements)}", input=name)
    return elements


def _flatten(items: list[Any]) -> list[Any]:
    return [x for item in items for x in (_flatten(item) if isinstance(item, list) else [item])]


def _b64(name: str, text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"input {name!r}: in JSON, file elements are base64 strings", input=name) from exc


def oip_tensor_metadata(spec: Any) -> dict[str, Any]:
    """An input's metadata as the protocol describes tensors."""
    if REGISTRY[spec.kind].wire == "tensor":
        return {"name": spec.name, "datatype": DTYPE_DATATYPES[spec.dtype], "shape": list(spec.shape)}
    return {"name": spec.name, "datatype": "BYTES", "shape": [-1], "parameters": {"seedserve_kind": spec.kind}}


def oip_datatype(array: np.ndarray) -> str:
    """The datatype an output answers as: its dtype's, FP32 for any dtype the
    protocol has no name for (answered converted, see :func:`encode_infer_response`)."""
    return DTYPE_DATATYPES.get(array.dtype.name, "FP32")


def oip_output_metadata(
    one: dict[str, np.ndarray], two: dict[str, np.ndarray] | None, names: list[str]
) -> list[dict[str, Any]]:
    """Outputs' metadata from what the model answered for a sample of one item
    (``one``) and of two (``two``, None if that call failed): the observed
    shape with the batch dimension, and any other that changed with the
    item count, as -1; the datatype each is answered in. Outputs the
    manifest declares but the sample did not produce are left out."""
    metadata = []
    for name in [n for n in names if n in one] + [n for n in one if n not in names]:
        array = np.asarray(one[name])
        shape = list(array.shape)
        other = None if two is None or name not in two else np.asarray(two[name]).shape
        if other is not None and len(other) == len(shape):
            shape = [-1 if a != b else a for a, b in zip(shape, other, strict=True)]
        if shape:
            shape[0] = -1
        metadata.append({"name": name, "datatype": oip_datatype(array), "shape": shape})
    return metadata


def encode_infer_response(
    model: str, version: int, outputs: dict[str, np.ndarray], request: dict[str, Any]
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers; outputs asked for as binary come after the JSON."""
    wanted = {o.get("name"): o for o in request.get("outputs") or [] if isinstance(o, dict)}
    binary_all = bool((request.get("parameters") or {}).get("binary_data_output"))
    tensors, blobs = [], []
    for name, array in outputs.items():
        if wanted and name not in wanted:
            continue
        array = np.asarray(array)
        datatype = oip_datatype(array)
        if datatype == "FP32" and array.dtype.name not in DTYPE_DATATYPES:
            array = array.astype(np.float32)
        tensor: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if binary_all or (wanted.get(name, {}).get("parameters") or {}).get("binary_data"):
            blob = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"))).tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = array.ravel().tolist()
        tensors.append(tensor)
    header = json.dumps({"model_name": model, "model_version": str(version), "id": request.get("id", ""),
                         "outputs": tensors}).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
