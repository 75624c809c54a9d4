"""Encoders: natural Python values to wire values (the codecs' inverse).

- PIL images -> PNG files; ``pathlib.Path`` -> the file's bytes; ``bytes`` as is;
- numpy arrays and torch tensors -> nested lists when small, raw little-endian
  ``{"b64", "dtype", "shape"}`` when large or holding NaN or Inf (JSON has neither);
- networkx graphs -> ``{"x", "edge_index"[, "edge_attr"]}`` from node
  attribute ``x`` and edge attribute ``edge_attr``;
- strings, records, column dicts, graph and recommender dicts go as they are.

Files travel as multipart parts (no base64) or as ``{"b64", "mime"}`` in JSON.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seedserve.codecs.registry import mime_types

__all__ = ["File", "Encoded", "encode_value", "encode_inputs", "MULTIPART_THRESHOLD"]

#: Above this many bytes of files, ``auto`` sends multipart instead of base64 JSON.
MULTIPART_THRESHOLD = 64 * 1024
_LIST_LIMIT = 4096  # elements: larger arrays go as raw base64


@dataclass(frozen=True)
class File:
    """A file input: its bytes and media type."""

    data: bytes
    mime: str = "application/octet-stream"
    filename: str = "file"

    def as_json(self) -> dict[str, str]:
        return {"b64": base64.b64encode(self.data).decode("ascii"), "mime": self.mime}


@dataclass
class Encoded:
    """A query ready to send: JSON values, and files kept apart."""

    values: dict[str, Any] = field(default_factory=dict)
    files: dict[str, list[File]] = field(default_factory=dict)
    _batched: set[str] = field(default_factory=set)  # inputs sent as a list of files

    @property
    def file_bytes(self) -> int:
        return sum(len(f.data) for files in self.files.values() for f in files)

    def json_body(self) -> dict[str, Any]:
        body = dict(self.values)
        for name, files in self.files.items():
            body[name] = [f.as_json() for f in files] if len(files) > 1 or name in self._batched else files[0].as_json()
        return body

    def multipart(self) -> list[tuple[str, tuple[str | None, bytes | str, str]]]:
        """Parts for httpx's ``files=``: fields as parts without a filename (so
        the body is multipart even when there is no file), then the files."""
        parts: list[tuple[str, tuple[str | None, bytes | str, str]]] = []
        for name, value in self.values.items():
            if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                parts += [(name, (None, v, "text/plain")) for v in value]  # a batch of texts: one part each
            else:
                parts.append((name, (None, value if isinstance(value, str) else json.dumps(value), "text/plain")))
        parts += [(name, (f.filename, f.data, f.mime)) for name, fs in self.files.items() for f in fs]
        return parts


def encode_inputs(inputs: dict[str, Any]) -> Encoded:
    encoded = Encoded()
    for name, value in inputs.items():
        items = value if isinstance(value, list) and value and all(_is_file(v) for v in value) else None
        if items is not None:
            encoded.files[name] = [_file(v) for v in items]
            encoded._batched.add(name)
        elif _is_file(value):
            encoded.files[name] = [_file(value)]
        else:
            encoded.values[name] = encode_value(value)
    return encoded


def encode_value(value: Any) -> Any:
    """A JSON-ready wire value for a non-file ``value``."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        # JSON has no NaN or Inf: such arrays go as raw bytes, for the server
        # to take (allow_nan) or refuse by name.
        if value.size <= _LIST_LIMIT and (value.dtype.kind != "f" or np.isfinite(value).all()):
            return value.tolist()
        little = value.astype(value.dtype.newbyteorder("<"), copy=False)
        return {"b64": base64.b64encode(np.ascontiguousarray(little).tobytes()).decode("ascii"),
                "dtype": value.dtype.name, "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if type(value).__module__.startswith("networkx"):
        return _graph(value)
    if isinstance(value, list) and any(_needs_encoding(item) for item in value):
        return [encode_value(item) for item in value]  # a batch of arrays, tensors or graphs
    return value


def _needs_encoding(item: Any) -> bool:
    module = type(item).__module__
    return isinstance(item, (np.ndarray, np.generic)) or module.startswith(("torch", "networkx"))


def _is_file(value: Any) -> bool:
    return isinstance(value, (bytes, bytearray, Path, File)) or _is_pil(value)


def _is_pil(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.") and hasattr(value, "save")


def _file(value: Any) -> File:
    if isinstance(value, File):
        return value
    if isinstance(value, (bytes, bytearray)):
        return File(bytes(value))
    if isinstance(value, Path):
        return File(value.read_bytes(), _mime(value.suffix), value.name)
    buffer = io.BytesIO()
    value.save(buffer, format="PNG")
    return File(buffer.getvalue(), "image/png", "image.png")


#: File suffix -> media type: the files every input kind takes.
_MIMES = mime_types()


def _mime(suffix: str) -> str:
    return _MIMES.get(suffix.lower(), "application/octet-stream")


def _graph(graph: Any) -> dict[str, Any]:
    nodes = list(graph.nodes)
    index = {node: i for i, node in enumerate(nodes)}
    x = [list(graph.nodes[node].get("x", [])) for node in nodes]
    pairs = list(graph.edges(data=True))
    if not graph.is_directed():
        pairs += [(v, u, d) for u, v, d in pairs]
    result: dict[str, Any] = {"x": x, "edge_index": [[index[u] for u, _, _ in pairs], [index[v] for _, v, _ in pairs]]}
    if pairs and "edge_attr" in pairs[0][2]:
        result["edge_attr"] = [list(d["edge_attr"]) for _, _, d in pairs]
    return result
