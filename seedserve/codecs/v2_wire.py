"""The Open Inference Protocol (v2) wire format shared by the server and the
SDK: datatype names, the binary extension's header, and ``BYTES`` elements
(each a 4-byte little-endian length and its bytes)."""

from __future__ import annotations

import struct
from collections.abc import Iterable

__all__ = ["DATATYPES", "DTYPE_DATATYPES", "HEADER_LENGTH", "pack_bytes"]

#: The header giving the length of the JSON part of a binary request or response.
HEADER_LENGTH = "inference-header-content-length"

#: OIP datatype -> numpy dtype name (``BYTES`` is not numeric and not here).
DATATYPES = {
    "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "FP16": "float16", "FP32": "float32", "FP64": "float64",
}
#: numpy dtype name -> OIP datatype.
DTYPE_DATATYPES = {v: k for k, v in DATATYPES.items()}


def pack_bytes(elements: Iterable[bytes]) -> bytes:
    """``BYTES`` elements in the binary extension's layout."""
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)
