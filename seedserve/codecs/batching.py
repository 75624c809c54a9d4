"""Dynamic batching, the pure part: several queries' decoded inputs merged into
one model call, and the model's outputs split back per query.

Arrays are concatenated along their first (batch) dimension. Graphs and
recommender features merge the way their codecs batch within one query:
edge indices shift by the nodes before them, the ``batch`` vector by the
graphs before them, and ``EmbeddingBag`` offsets by the values before them,
so merging decoded queries equals decoding their concatenation.

Queries can share a model call only when their arrays agree beyond the batch
dimension (an audio clip of 2 s and one of 3 s cannot); :func:`signature`
says which can.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from seedserve.codecs.registry import Decoded

__all__ = ["items", "signature", "merge", "split"]


def items(query: Mapping[str, Decoded]) -> int:
    """How many batch items a decoded query holds (rows, images, graphs, requests)."""
    counts = {_items(value) for value in query.values()}
    return max(counts) if counts else 0


def _items(value: Decoded) -> int:
    if isinstance(value, np.ndarray):
        return int(value.shape[0]) if value.ndim else 1
    if "batch" in value:  # graph: the batch vector numbers the graphs
        return int(value["batch"][-1]) + 1 if value["batch"].size else 0
    return int(value["user"].shape[0])  # recommender: one user per request


def signature(query: Mapping[str, Decoded]) -> tuple[Any, ...]:
    """Queries with equal signatures can be merged into one model call."""
    parts: list[Any] = []
    for name, value in query.items():
        if isinstance(value, np.ndarray):
            parts.append((name, value.dtype.str, value.shape[1:]))
        else:  # graph and recommender merge whatever their sizes; their keys must agree
            parts.append((name, tuple((k, v.dtype.str, v.shape[1:] if k not in _VARIABLE_AXIS1 else v.shape[:1])
                                      for k, v in value.items())))
    return tuple(parts)


_VARIABLE_AXIS1 = {"edge_index"}  # [2, edges]: the edges vary, the 2 does not


def merge(queries: Sequence[Mapping[str, Decoded]]) -> dict[str, Decoded]:
    """One model call's inputs from several queries with the same signature."""
    first = queries[0]
    return {
        name: (np.concatenate([q[name] for q in queries]) if isinstance(first[name], np.ndarray)
               else _merge_named([q[name] for q in queries]))  # type: ignore[misc]
        for name in first
    }


def _merge_named(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if "batch" in parts[0]:
        return _merge_graphs(parts)
    return _merge_bags(parts)


def _merge_graphs(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    nodes = np.cumsum([0] + [len(p["x"]) for p in parts[:-1]])
    graphs = np.cumsum([0] + [_items(p) for p in parts[:-1]])
    merged = {}
    for key in parts[0]:
        if key == "edge_index":
            merged[key] = np.concatenate([p[key] + shift for p, shift in zip(parts, nodes, strict=True)], axis=1)
        elif key == "batch":
            merged[key] = np.concatenate([p[key] + shift for p, shift in zip(parts, graphs, strict=True)])
        else:
            merged[key] = np.concatenate([p[key] for p in parts])
    return merged


def _merge_bags(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    merged = {}
    for key in parts[0]:
        if key.endswith("offsets"):
            values = "items" if key == "item_offsets" else key[: -len("offsets")] + "values"
            shifts = np.cumsum([0] + [len(p[values]) for p in parts[:-1]])
            merged[key] = np.concatenate([p[key] + shift for p, shift in zip(parts, shifts, strict=True)])
        else:
            merged[key] = np.concatenate([p[key] for p in parts])
    return merged


def split(outputs: Mapping[str, np.ndarray], counts: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """Each query's share of a merged call's outputs, by its item count.

    Raises ``ValueError`` when an output's first dimension is not the total
    item count (a model whose outputs are not per item cannot be batched).
    """
    total = sum(counts)
    bounds = np.cumsum(counts)[:-1]
    shares: list[dict[str, np.ndarray]] = [{} for _ in counts]
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != total:
            raise ValueError(
                f"output {name!r} has shape {list(array.shape)}, not one row per item of a batch of {total}"
            )
        for share, piece in zip(shares, np.split(array, bounds), strict=True):
            share[name] = piece
    return shares
