"""Frames between a server and its sandboxed process: a JSON header and raw
array bytes, never a pickle.

A frame is two little-endian uint64 lengths (header, payload), the header
as JSON, then the payload: the arrays' bytes one after another. The server
reads frames written by hostile code, so :func:`read_frame` bounds both
lengths before reading and :func:`arrays_from` checks every dtype, shape
and size against the bytes that came.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

__all__ = ["SPARE_READY", "FrameError", "Reader", "Writer", "arrays_from", "pack_arrays", "read_frame", "write_frame"]

#: The line a spare test-load child (seedserve.manager_app.artifact_check.SpareSandbox)
#: prints once its imports are done.
SPARE_READY = "ready"

_LENGTHS = struct.Struct("<QQ")
_MAX_HEADER = 16 * 2**20

#: Dtypes that cross the boundary; ``object`` arrays travel as JSON strings.
_DTYPES = frozenset({"bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64",
                     "uint16", "uint32", "uint64", "complex64", "complex128"})


class Writer(Protocol):
    """Where frames are written: a pipe (``Popen.stdin``, ``sys.stdout.buffer``)."""

    def write(self, data: bytes, /) -> int | None: ...

    def flush(self) -> None: ...


class Reader(Protocol):
    """Where frames are read from: a pipe, or the server's deadline reader."""

    def read(self, size: int, /) -> bytes | None: ...


class FrameError(ValueError):
    """A frame that is cut off, too large, or does not describe its bytes."""


def write_frame(stream: Writer, header: Mapping[str, Any], payload: bytes | bytearray | memoryview = b"") -> None:
    body = json.dumps(header, separators=(",", ":")).encode()
    # One write: the reader wakes once per frame, not once per part.
    stream.write(b"".join((_LENGTHS.pack(len(body), len(payload)), body, payload)))
    stream.flush()


def _read_exactly(stream: Reader, size: int) -> bytes:
    data = stream.read(size)
    if data is None or len(data) != size:
        raise FrameError(f"the stream ended after {0 if not data else len(data)} of {size} bytes")
    return data


def read_frame(stream: Reader, max_payload: int) -> tuple[dict[str, Any], bytes]:
    """The next frame's header and payload; :class:`FrameError` if either is
    over its limit or the stream ends first."""
    header_size, payload_size = _LENGTHS.unpack(_read_exactly(stream, _LENGTHS.size))
    if header_size > _MAX_HEADER:
        raise FrameError(f"a header of {header_size:,} bytes exceeds the limit of {_MAX_HEADER:,}")
    if payload_size > max_payload:
        raise FrameError(f"a payload of {payload_size:,} bytes exceeds the limit of {max_payload:,}")
    try:
        header = json.loads(_read_exactly(stream, header_size))
    except ValueError as exc:
        raise FrameError(f"the header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise FrameError("the header is not a JSON object")
    return header, _read_exactly(stream, payload_size)


def pack_arrays(values: Mapping[str, np.ndarray | Mapping[str, np.ndarray]]) -> tuple[list[dict[str, Any]], bytes]:
    """Describe ``values`` (arrays, or dicts of them as graph and recommender
    inputs decode to) and join their bytes."""
    described: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, value in values.items():
        parts = value.items() if isinstance(value, Mapping) else [(None, value)]
        for part, array in parts:
            entry: dict[str, Any] = {"name": name, "part": part}
            if array.dtype == object:
                entry["strings"] = [str(item) for item in array.reshape(-1).tolist()]
                entry["shape"] = list(array.shape)
            else:
                data = np.ascontiguousarray(array)
                entry |= {"dtype": data.dtype.name, "shape": list(data.shape), "nbytes": data.nbytes}
                chunks.append(data.tobytes())
            described.append(entry)
    return described, b"".join(chunks)


def _shape(entry: Mapping[str, Any]) -> tuple[int, ...]:
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise FrameError(f"array {entry.get('name')!r} has no valid shape: {shape!r}")
    return tuple(shape)


def _array(entry: Mapping[str, Any], payload: bytes, offset: int) -> tuple[np.ndarray, int]:
    shape = _shape(entry)
    if "strings" in entry:
        strings = entry["strings"]
        if not isinstance(strings, list) or not all(isinstance(s, str) for s in strings):
            raise FrameError(f"array {entry.get('name')!r}: strings must be a list of strings")
        if int(np.prod(shape)) != len(strings):
            raise FrameError(f"array {entry.get('name')!r}: {len(strings)} strings do not fill shape {list(shape)}")
        return np.array(strings, dtype=object).reshape(shape), offset
    dtype, nbytes = entry.get("dtype"), entry.get("nbytes")
    if dtype not in _DTYPES:
        raise FrameError(f"array {entry.get('name')!r} has dtype {dtype!r}; allowed: {sorted(_DTYPES)}")
    if not isinstance(nbytes, int) or nbytes != int(np.prod(shape)) * np.dtype(dtype).itemsize:
        raise FrameError(f"array {entry.get('name')!r}: {nbytes!r} bytes do not match {dtype} of shape {list(shape)}")
    if offset + nbytes > len(payload):
        raise FrameError(f"array {entry.get('name')!r} runs past the payload's {len(payload):,} bytes")
    array = np.frombuffer(payload, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)
    return array, offset + nbytes


def arrays_from(entries: Any, payload: bytes) -> dict[str, Any]:
    """The arrays a frame describes, by name (dicts for named parts), after
    checking each entry against the payload; the payload must be used up."""
    if not isinstance(entries, list):
        raise FrameError("the arrays are not a list")
    values: dict[str, Any] = {}
    offset = 0
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise FrameError(f"an array entry is not an object with a name: {str(entry)[:100]}")
        array, offset = _array(entry, payload, offset)
        name, part = entry["name"], entry.get("part")
        if part is None:
            values[name] = array
        elif isinstance(part, str) and isinstance(values.setdefault(name, {}), dict):
            values[name][part] = array
        else:
            raise FrameError(f"array {name!r} has a part that is not a string")
    if offset != len(payload):
        raise FrameError(f"{len(payload) - offset:,} bytes of the payload belong to no array")
    return values
