"""KServe v2 gRPC messages to and from the Open Inference Protocol's REST
form with its binary extension, the form the model's replica parses
(``seedserve.deployments._v2_rest``).

Every input travels to the replica as binary data (``binary_data_size``):
raw contents as they came, typed contents laid out as raw ones. Every output
comes back binary and goes out as ``raw_output_contents``, as Triton answers.
Nothing is decoded here beyond that layout: shapes, datatypes and the
model's inputs are checked by the replica, with the messages of ``/v2``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from seedserve.codecs.v2_wire import DATATYPES, HEADER_LENGTH, pack_bytes
from seedserve.errors import InvalidInput
from seedserve.grpc import grpc_predict_v2_pb2 as pb

__all__ = ["infer_request_body", "infer_response", "metadata_response"]

#: OIP datatype -> the InferTensorContents field holding it (FP16 has none: raw only).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


def infer_request_body(request: pb.ModelInferRequest) -> tuple[str, bytes]:
    """The ``Inference-Header-Content-Length`` value and the body of the
    equivalent binary OIP request."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; send one per input, in order"
        )
    tensors, blobs = [], []
    for i, tensor in enumerate(request.inputs):
        if raw and tensor.HasField("contents"):
            raise InvalidInput(
                f"input {tensor.name!r}: typed contents beside raw_input_contents; send one form for all inputs",
                input=tensor.name,
            )
        blob = raw[i] if raw else _typed_bytes(tensor)
        tensors.append({"name": tensor.name, "shape": list(tensor.shape), "datatype": tensor.datatype,
                        "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    header: dict[str, Any] = {"inputs": tensors, "parameters": {"binary_data_output": True}}
    if request.id:
        header["id"] = request.id
    if request.outputs:
        header["outputs"] = [{"name": o.name, "parameters": {"binary_data": True}} for o in request.outputs]
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return str(len(encoded)), encoded + b"".join(blobs)


def _typed_bytes(tensor: pb.ModelInferRequest.InferInputTensor) -> bytes:
    """A tensor's typed contents in the raw layout (little-endian, row-major)."""
    name, datatype = tensor.name, tensor.datatype
    field = _CONTENTS_FIELD.get(datatype)
    if field is None:
        if datatype == "FP16":
            raise InvalidInput(f"input {name!r}: FP16 has no typed contents; send it in raw_input_contents", input=name)
        raise InvalidInput(f"input {name!r}: datatype {datatype!r} is not an OIP datatype", input=name)
    if any(d < 0 for d in tensor.shape):
        raise InvalidInput(f"input {name!r}: 'shape' must be a list of non-negative integers", input=name)
    values = getattr(tensor.contents, field)
    if datatype == "BYTES":
        return pack_bytes(values)
    count = math.prod(tensor.shape)
    if len(values) != count:
        raise InvalidInput(
            f"input {name!r}: shape {list(tensor.shape)} needs {count} elements, contents.{field} has {len(values)}",
            input=name,
        )
    try:
        array = np.array(values, dtype=np.dtype(DATATYPES[datatype]).newbyteorder("<"))
    except (OverflowError, ValueError) as exc:
        raise InvalidInput(f"input {name!r}: contents.{field} holds a value outside {datatype}: "
                           f"{exc}", input=name) from exc
    return array.tobytes()


def infer_response(headers: dict[str, str], body: bytes) -> pb.ModelInferResponse:
    """The replica's binary OIP answer as a ModelInferResponse with raw outputs."""
    length = int(headers.get(HEADER_LENGTH, len(body)))
    answer = json.loads(body[:length])
    response = pb.ModelInferResponse(model_name=answer["model_name"], model_version=str(answer["model_version"]),
                                     id=answer.get("id") or "")
    offset = length
    for tensor in answer["outputs"]:
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is None:  # an output the replica sent as JSON data
            data = np.asarray(tensor["data"], dtype=np.dtype(DATATYPES[tensor["datatype"]]).newbyteorder("<")).tobytes()
        else:
            data, offset = body[offset : offset + size], offset + size
        response.outputs.add(name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"])
        response.raw_output_contents.append(data)
    return response


def metadata_response(body: bytes) -> pb.ModelMetadataResponse:
    """The replica's OIP model metadata (JSON) as a ModelMetadataResponse."""
    meta = json.loads(body)
    response = pb.ModelMetadataResponse(name=meta["name"], versions=[str(v) for v in meta.get("versions", [])],
                                        platform=meta.get("platform", ""))
    for kind in ("inputs", "outputs"):
        for tensor in meta.get(kind, []):
            getattr(response, kind).add(name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"])
    return response
