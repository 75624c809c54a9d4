"""Merging decoded queries equals decoding them as one batch, for every kind;
splitting gives each query its own rows back."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seedserve.codecs import decode_inputs, parse_manifest
from seedserve.codecs.batching import items, merge, signature, split
from seedserve.codecs.registry import kind, kinds_of

MANIFEST = parse_manifest({
    "name": "b",
    "inputs": [
        {"name": "x", "kind": "tensor", "shape": [-1, 2]},
        {"name": "row", "kind": "tabular", "columns": [{"name": "a"}]},
        {"name": "words", "kind": "text", "tokenizer": "utf8_bytes", "max_tokens": 4},
        {"name": "g", "kind": "graph", "node_features": 1, "edge_features": 1},
        {"name": "rec", "kind": "recommender", "users": {"hash_buckets": 50}, "items": {"hash_buckets": 50},
         "sparse": [{"name": "tags", "hash_buckets": 9}], "dense_features": 1},
    ],
    "outputs": [{"name": "y"}],
})
KINDS = kinds_of(MANIFEST.inputs)


@st.composite
def query(draw: st.DrawFn, n: int) -> dict[str, Any]:
    """A query of ``n`` items for every input."""
    def graph() -> dict[str, Any]:
        nodes = draw(st.integers(1, 4))
        edges = draw(st.integers(0, 4))
        ends = st.lists(st.integers(0, nodes - 1), min_size=edges, max_size=edges)
        return {"x": [[float(i)] for i in range(nodes)], "edge_index": [draw(ends), draw(ends)],
                "edge_attr": [[1.0]] * edges}

    def request() -> dict[str, Any]:
        ids = st.lists(st.integers(0, 99), max_size=4)
        return {"user": draw(st.integers(0, 99)), "items": draw(ids), "sparse": {"tags": draw(ids)}, "dense": [0.5]}

    return {
        "x": [[float(i), 1.0] for i in range(n)],
        "row": [{"a": float(i)} for i in range(n)],
        "words": [draw(st.text(max_size=6)) for _ in range(n)],
        "g": [graph() for _ in range(n)],
        "rec": [request() for _ in range(n)],
    }


@settings(max_examples=50, deadline=None)
@given(data=st.data(), sizes=st.lists(st.integers(1, 3), min_size=1, max_size=4))
def test_merging_decoded_queries_equals_decoding_their_concatenation(data: st.DataObject, sizes: list[int]) -> None:
    queries = [data.draw(query(n)) for n in sizes]
    decoded = [decode_inputs(MANIFEST, q) for q in queries]
    assert [items(d, KINDS) for d in decoded] == sizes
    assert len({signature(d, KINDS) for d in decoded}) == 1
    merged = merge(decoded, KINDS)
    together = decode_inputs(MANIFEST, {name: [v for q in queries for v in q[name]] for name in queries[0]})
    for name, value in together.items():
        if isinstance(value, dict):
            assert list(merged[name]) == list(value)  # type: ignore[arg-type]
            for key in value:
                np.testing.assert_array_equal(merged[name][key], value[key], err_msg=f"{name}.{key}")  # type: ignore[index]
        else:
            np.testing.assert_array_equal(merged[name], value, err_msg=name)


def test_queries_with_different_trailing_shapes_have_different_signatures() -> None:
    a = {"clip": np.zeros((1, 100), np.float32)}
    b = {"clip": np.zeros((1, 200), np.float32)}
    audio = {"clip": kind("audio")}
    assert signature(a, audio) != signature(b, audio)
    assert signature(a, audio) == signature({"clip": np.zeros((3, 100), np.float32)}, audio)


def test_split_gives_each_query_its_rows_and_refuses_outputs_that_are_not_per_item() -> None:
    y = np.arange(12).reshape(6, 2)
    shares = split({"y": y}, [1, 3, 2])
    assert [s["y"].tolist() for s in shares] == [y[:1].tolist(), y[1:4].tolist(), y[4:].tolist()]
    with pytest.raises(ValueError, match="one row per item"):
        split({"y": np.zeros(5)}, [1, 3, 2])
    with pytest.raises(ValueError, match="one row per item"):
        split({"loss": np.float32(1.0) * np.ones(())}, [1])
