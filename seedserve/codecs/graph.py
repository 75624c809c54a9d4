"""Graphs: ``{"x": [[..]] (N x F), "edge_index": [[src..], [dst..]] (2 x E),
"edge_attr": [[..]] (E x D)}``, one graph or a list.

A batch is concatenated the way graph libraries do: node features stacked,
edge indices shifted by the nodes before them, and a ``batch`` vector giving
each node's graph. The model gets ``x, edge_index[, edge_attr], batch``.
Node and edge counts are checked before any array is built.
"""

from __future__ import annotations

from itertools import chain
from typing import Any, Literal

import numpy as np
from pydantic import Field

from seedserve.codecs._common import InputBase, as_batch, float_array
from seedserve.codecs.kind import Form, Kind
from seedserve.errors import InputTooLarge, InvalidInput

__all__ = ["GraphInput", "decode_graph", "sample_graph", "KIND"]


class GraphInput(InputBase):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    kind: Literal["graph"] = "graph"
    node_features: int = Field(ge=1, le=100_000)
    edge_features: int = Field(default=0, ge=0, le=100_000)
    max_nodes: int = Field(default=100_000, ge=1, le=100_000_000)
    max_edges: int = Field(default=1_000_000, ge=0, le=1_000_000_000)
    max_batch: int = Field(default=64, ge=1, le=10_000)


def decode_graph(value: Any, spec: GraphInput) -> dict[str, np.ndarray]:
    graphs = as_batch(value, spec.name, spec.max_batch, dict)
    _check_totals(graphs, spec)
    parts = [_one(graph, spec, i) for i, graph in enumerate(graphs)]
    if len(parts) == 1:  # the common case: no copies
        x, edge_index, edge_attr = parts[0]
        result = {"x": x, "edge_index": edge_index}
        if edge_attr is not None:
            result["edge_attr"] = edge_attr
        result["batch"] = np.zeros(len(x), dtype=np.int64)
        return result
    sizes = np.fromiter((len(x) for x, _, _ in parts), dtype=np.int64, count=len(parts))
    shifts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    result = {
        "x": np.concatenate([x for x, _, _ in parts]),
        "edge_index": np.concatenate([edges + shift for (_, edges, _), shift in zip(parts, shifts, strict=True)],
                                     axis=1),
    }
    if spec.edge_features:
        result["edge_attr"] = np.concatenate([attr for _, _, attr in parts])
    result["batch"] = np.repeat(np.arange(len(parts), dtype=np.int64), sizes)
    return result


def _check_totals(graphs: list[Any], spec: GraphInput) -> None:
    nodes = edges = 0
    for i, graph in enumerate(graphs):
        if not isinstance(graph, dict) or not isinstance(graph.get("x"), list):
            raise InvalidInput(f"input {spec.name!r}: graph {i} needs 'x', a list of node feature rows",
                               input=spec.name)
        index = graph.get("edge_index")
        if not (isinstance(index, list) and len(index) == 2 and all(isinstance(r, list) for r in index)):
            raise InvalidInput(
                f"input {spec.name!r}: graph {i} needs 'edge_index' as two lists [sources, targets]", input=spec.name
            )
        nodes += len(graph["x"])
        edges += len(index[0])
    for what, count, limit in (("nodes", nodes, spec.max_nodes), ("edges", edges, spec.max_edges)):
        if count > limit:
            raise InputTooLarge(
                f"input {spec.name!r}: {count:,} {what} exceeds the limit of {limit:,}; "
                f"send a smaller graph or raise max_{what} in the manifest",
                input=spec.name, limit=limit, got=count,
            )


def _one(graph: dict[str, Any], spec: GraphInput, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    name = spec.name
    x = _array(graph["x"], np.float32, name, f"graph {i} 'x'")
    if x.ndim != 2 or x.shape[1] != spec.node_features or len(x) == 0:
        raise InvalidInput(
            f"input {name!r}: graph {i} 'x' has shape {list(x.shape)}, expected [nodes >= 1, {spec.node_features}]",
            input=name,
        )
    edge_index = _node_indices(graph["edge_index"], name, f"graph {i} 'edge_index'")
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise InvalidInput(f"input {name!r}: graph {i} 'edge_index' must be [2, edges], got "
                           f"{list(edge_index.shape)}", input=name)
    if edge_index.size:
        low, high = int(edge_index.min()), int(edge_index.max())
        if low < 0 or high >= len(x):
            raise InvalidInput(
                f"input {name!r}: graph {i} 'edge_index' refers to node {low if low < 0 else high}, "
                f"but the graph has nodes 0..{len(x) - 1}",
                input=name,
            )
    edge_attr = None
    if spec.edge_features:
        if "edge_attr" not in graph:
            raise InvalidInput(f"input {name!r}: graph {i} needs 'edge_attr' [edges, {spec.edge_features}]", input=name)
        edge_attr = np.zeros((0, spec.edge_features), np.float32)
        if graph["edge_attr"]:
            values = _array(graph["edge_attr"], np.float32, name, f"graph {i} 'edge_attr'")
            edge_attr = values.reshape(-1, spec.edge_features)
        if edge_attr.shape[0] != edge_index.shape[1]:
            raise InvalidInput(
                f"input {name!r}: graph {i} has {edge_index.shape[1]} edges but {edge_attr.shape[0]} edge_attr rows",
                input=name,
            )
    elif "edge_attr" in graph:
        raise InvalidInput(f"input {name!r}: graph {i} sends 'edge_attr' but the manifest declares no edge features",
                           input=name)
    return x, edge_index, edge_attr


def _array(value: Any, dtype: type, name: str, what: str) -> np.ndarray:
    try:
        array = float_array(value, np.dtype(dtype))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"input {name!r}: {what} is not a rectangular array of numbers", input=name) from exc
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInput(f"input {name!r}: {what} holds NaN or Inf", input=name)
    return array


def _node_indices(rows: list[list[Any]], name: str, what: str) -> np.ndarray:
    """Integers only, checked without a pass per element in Python: the sum
    of a list of ints is an int, and any float (1.5, NaN) makes it a float
    (a direct int64 cast would silently turn node 1.5 into node 1); strings
    and nulls make it fail."""
    sources, targets = rows
    if len(sources) != len(targets):
        raise InvalidInput(
            f"input {name!r}: {what} must be two equally long lists [sources, targets], "
            f"got {len(sources)} and {len(targets)}",
            input=name,
        )
    try:
        if type(sum(sources)) is not int or type(sum(targets)) is not int:
            raise TypeError("a float among the indices")
        flat = np.fromiter(chain(sources, targets), dtype=np.int64, count=2 * len(sources))
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput(
            f"input {name!r}: {what} must hold integer node indices (no fractions, strings or nulls)", input=name
        ) from exc
    return flat.reshape(2, -1)


def sample_graph(spec: GraphInput, batch: int = 1) -> dict[str, np.ndarray]:
    graph = {"x": [[0.0] * spec.node_features] * 2, "edge_index": [[0], [1]]}
    if spec.edge_features:
        graph["edge_attr"] = [[0.0] * spec.edge_features]
    return decode_graph([graph] * batch, spec)


def _example(spec: GraphInput) -> dict[str, Any]:
    features = [0.0] * spec.node_features
    return {"x": [features, features], "edge_index": [[0], [1]]}


KIND = Kind(
    name="graph", spec=GraphInput, decoder="seedserve.codecs.graph:decode_graph",
    sampler="seedserve.codecs.graph:sample_graph", wire="json", batching="seedserve.codecs.batching:GRAPHS",
    doc="{x, edge_index, edge_attr?} or a list of graphs", form=Form("json", example=_example),
)
