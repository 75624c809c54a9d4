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

Each input batches as its kind says (``Kind.batching`` names one of the
strategies here), never by guessing from the decoded value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from seedserve.codecs.kind import Decoded, Kind

__all__ = ["BAGS", "GRAPHS", "ROWS", "items", "signature", "merge", "split"]


def items(query: Mapping[str, Decoded], kinds: Mapping[str, Kind]) -> int:
    """How many batch items a decoded query holds (rows, images, graphs, requests);
    ``kinds``: each input's kind (:func:`seedserve.codecs.registry.kinds_of`)."""
    counts = {kinds[name].batcher.items(value) for name, value in query.items()}
    return max(counts) if counts else 0


def signature(query: Mapping[str, Decoded], kinds: Mapping[str, Kind]) -> tuple[Any, ...]:
    """Queries with equal signatures can be merged into one model call."""
    return tuple((name, kinds[name].batcher.signature(value)) for name, value in query.items())


def merge(queries: Sequence[Mapping[str, Decoded]], kinds: Mapping[str, Kind]) -> dict[str, Decoded]:
    """One model call's inputs from several queries with the same signature."""
    return {name: kinds[name].batcher.merge([q[name] for q in queries]) for name in queries[0]}


class Rows:
    """One array whose first dimension is the batch: items are its rows,
    arrays agree beyond it, and merge by concatenation."""

    def items(self, value: Decoded) -> int:
        array = _array(value)
        return int(array.shape[0]) if array.ndim else 1

    def signature(self, value: Decoded) -> Any:
        array = _array(value)
        return array.dtype.str, array.shape[1:]

    def merge(self, values: Sequence[Decoded]) -> Decoded:
        return np.concatenate([_array(v) for v in values])


class _Named:
    """Named arrays that merge whatever their sizes; their keys and trailing shapes must agree."""

    #: Keys whose first dimension is fixed and second varies.
    variable_axis1: frozenset[str] = frozenset()

    def signature(self, value: Decoded) -> Any:
        named = _named(value)
        return tuple((k, v.dtype.str, v.shape[1:] if k not in self.variable_axis1 else v.shape[:1])
                     for k, v in named.items())


class Graphs(_Named):
    """Graphs as the graph codec batches them: ``x`` and ``edge_attr`` rows
    concatenate, ``edge_index`` shifts by the nodes before it and ``batch``
    (the graph of each node) by the graphs before it."""

    variable_axis1 = frozenset({"edge_index"})  # [2, edges]: the edges vary, the 2 does not

    def items(self, value: Decoded) -> int:
        batch = _named(value)["batch"]  # the batch vector numbers the graphs
        return int(batch[-1]) + 1 if batch.size else 0

    def merge(self, values: Sequence[Decoded]) -> Decoded:
        parts = [_named(v) for v in values]
        nodes = np.cumsum([0] + [len(p["x"]) for p in parts[:-1]])
        graphs = np.cumsum([0] + [self.items(p) for p in parts[:-1]])
        merged = {}
        for key in parts[0]:
            if key == "edge_index":
                merged[key] = np.concatenate([p[key] + shift for p, shift in zip(parts, nodes, strict=True)], axis=1)
            elif key == "batch":
                merged[key] = np.concatenate([p[key] + shift for p, shift in zip(parts, graphs, strict=True)])
            else:
                merged[key] = np.concatenate([p[key] for p in parts])
        return merged


class Bags(_Named):
    """Recommender features as their codec batches them: one ``user`` per
    request; ``EmbeddingBag`` offsets shift by the values before them."""

    def items(self, value: Decoded) -> int:
        return int(_named(value)["user"].shape[0])

    def merge(self, values: Sequence[Decoded]) -> Decoded:
        parts = [_named(v) for v in values]
        merged = {}
        for key in parts[0]:
            if key.endswith("offsets"):
                bag = "items" if key == "item_offsets" else key[: -len("offsets")] + "values"
                shifts = np.cumsum([0] + [len(p[bag]) for p in parts[:-1]])
                merged[key] = np.concatenate([p[key] + shift for p, shift in zip(parts, shifts, strict=True)])
            else:
                merged[key] = np.concatenate([p[key] for p in parts])
        return merged


def _array(value: Decoded) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"expected one array, got named arrays {sorted(value)}")
    return value


def _named(value: Decoded) -> dict[str, np.ndarray]:
    if isinstance(value, np.ndarray):
        raise TypeError(f"expected named arrays, got one array of shape {list(value.shape)}")
    return value


#: The batching of kinds whose decoded value is one array with the batch first.
ROWS = Rows()
#: The graph kind's.
GRAPHS = Graphs()
#: The recommender kind's.
BAGS = Bags()


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
