"""Tabular, text, graph and recommender decoding."""

from __future__ import annotations

import numpy as np
import pytest

from seedserve.codecs import GraphInput, RecommenderInput, TabularInput, TextInput
from seedserve.codecs.graph import decode_graph
from seedserve.codecs.recommender import decode_recommender
from seedserve.codecs.tabular import decode_tabular
from seedserve.codecs.text import decode_text
from seedserve.errors import InputTooLarge, InvalidInput

TABLE = TabularInput(
    name="row",
    columns=[
        {"name": "age", "type": "int"},
        {"name": "income", "type": "float", "missing": "zero"},
        {"name": "member", "type": "bool"},
        {"name": "city", "type": "category", "vocabulary": ["paris", "rome", "oslo"]},
    ],
)


def test_records_and_columns_decode_to_the_same_matrix() -> None:
    records = [{"age": 30, "income": 1.5, "member": True, "city": "rome"},
               {"age": 40, "member": False, "city": "oslo"}]
    columns = {"age": [30, 40], "income": [1.5, None], "member": [True, False], "city": ["rome", "oslo"]}
    expected = np.array([[30, 1.5, 1, 1], [40, 0, 0, 2]], dtype=np.float32)
    np.testing.assert_array_equal(decode_tabular(records, TABLE), expected)
    np.testing.assert_array_equal(decode_tabular(columns, TABLE), expected)
    np.testing.assert_array_equal(decode_tabular(records[0], TABLE), expected[:1])


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"income": 1.0, "member": True, "city": "rome"}, "column 'age' is missing in row 0"),
        ({"age": 1.5, "member": True, "city": "rome"}, "expected an integer"),
        ({"age": 1, "member": "yes", "city": "rome"}, "expected true or false"),
        ({"age": 1, "member": True, "city": "lima"}, "'lima' is not in its vocabulary"),
        ({"age": 1, "member": True, "city": "rome", "zip": 1}, "unknown column 'zip'"),
        ({"age": "old", "member": True, "city": "rome"}, "expected a number"),
    ],
)
def test_each_bad_cell_names_its_column_and_row(record: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_tabular(record, TABLE)


def test_row_limit_is_checked_before_conversion() -> None:
    spec = TabularInput(name="t", columns=[{"name": "a"}], max_rows=2)
    with pytest.raises(InputTooLarge, match="3 rows exceeds the limit of 2"):
        decode_tabular({"a": [1, 2, 3]}, spec)


def test_text_tokenizers() -> None:
    raw = decode_text(["hello", "wörld"], TextInput(name="t"))
    assert raw.tolist() == ["hello", "wörld"]
    ids = decode_text("hé", TextInput(name="t", tokenizer="utf8_bytes", max_tokens=4))
    assert ids.tolist() == [[ord("h") + 1, 0xC3 + 1, 0xA9 + 1, 0]]
    vocab = TextInput(name="t", tokenizer="vocabulary", vocabulary=["good", "movie"], max_tokens=5)
    assert decode_text("A good GOOD film", vocab).tolist() == [[1, 2, 2, 1, 0]]


def test_text_limits_and_types() -> None:
    with pytest.raises(InputTooLarge, match="6 characters, over the limit of 5"):
        decode_text("abcdef", TextInput(name="t", max_length=5))
    with pytest.raises(InvalidInput, match="not a string"):
        decode_text(["ok", 3], TextInput(name="t"))


GRAPH = GraphInput(name="g", node_features=2, edge_features=1)


def test_a_batch_of_graphs_is_concatenated_with_shifted_edges_and_a_batch_vector() -> None:
    a = {"x": [[1, 1], [2, 2]], "edge_index": [[0], [1]], "edge_attr": [[0.5]]}
    b = {"x": [[3, 3], [4, 4], [5, 5]], "edge_index": [[0, 2], [1, 0]], "edge_attr": [[1.0], [2.0]]}
    out = decode_graph([a, b], GRAPH)
    assert out["x"].shape == (5, 2)
    assert out["edge_index"].tolist() == [[0, 2, 4], [1, 3, 2]]
    assert out["edge_attr"].ravel().tolist() == [0.5, 1.0, 2.0]
    assert out["batch"].tolist() == [0, 0, 1, 1, 1]
    assert list(out) == ["x", "edge_index", "edge_attr", "batch"]


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        ({"x": [[1, 1]], "edge_index": [[0], [3]], "edge_attr": [[1]]}, "refers to node 3"),
        ({"x": [[1, 1, 1]], "edge_index": [[], []], "edge_attr": []}, r"expected \[nodes >= 1, 2\]"),
        ({"x": [[1, 1]], "edge_index": [[0]], "edge_attr": []}, "two lists"),
        ({"x": [[1, 1], [1, 1]], "edge_index": [[0], [1]]}, "needs 'edge_attr'"),
        ({"x": [[1, 1], [1, 1]], "edge_index": [[0], [1]], "edge_attr": [[1], [2]]}, "1 edges but 2 edge_attr"),
        ({"x": [[1, 1], [1, 1]], "edge_index": [[0], [0.5]], "edge_attr": [[1]]}, "integer node indices"),
        ({"x": [[1, 1], [1, 1]], "edge_index": [[0], ["1"]], "edge_attr": [[1]]}, "integer node indices"),
        ({"x": [[1, 1], [1, 1]], "edge_index": [[0], [float("nan")]], "edge_attr": [[1]]}, "integer node indices"),
        ({"x": [[1, 1], [1, 1]], "edge_index": [[0], [None]], "edge_attr": [[1]]}, "integer node indices"),
        ({"x": [[1, 1], [1, 1]], "edge_index": [[0, 1], [1]], "edge_attr": [[1]]}, "equally long"),
    ],
)
def test_inconsistent_graphs_are_refused(graph: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_graph(graph, GRAPH)


def test_graph_limits_are_checked_before_arrays_are_built() -> None:
    spec = GraphInput(name="g", node_features=1, max_nodes=3)
    with pytest.raises(InputTooLarge, match="4 nodes exceeds the limit of 3"):
        decode_graph([{"x": [[0], [0]], "edge_index": [[], []]}] * 2, spec)


RECS = RecommenderInput(
    name="r",
    users={"hash_buckets": 1000},
    items={"vocabulary": ["a", "b", "c"]},
    sparse=[{"name": "genres", "vocabulary": ["rock", "jazz"]}],
    dense_features=2,
)


def test_recommender_requests_batch_in_embedding_bag_layout() -> None:
    out = decode_recommender(
        [
            {"user": "u1", "items": ["a", "c"], "sparse": {"genres": ["jazz"]}, "dense": [1, 2]},
            {"user": "u2", "items": ["b", "zzz", "a"], "sparse": {"genres": []}, "dense": [3, 4]},
        ],
        RECS,
    )
    assert out["items"].tolist() == [1, 3, 2, 0, 1] and out["item_offsets"].tolist() == [0, 2]
    assert out["genres_values"].tolist() == [2] and out["genres_offsets"].tolist() == [0, 1]
    assert out["dense"].shape == (2, 2) and out["user"].shape == (2,)
    again = decode_recommender({"user": "u1", "items": ["a"], "sparse": {}, "dense": [0, 0]}, RECS)
    assert again["user"][0] == out["user"][0]  # stable hashing


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"items": ["a"], "dense": [1, 2]}, "needs 'user'"),
        ({"user": 1, "items": ["a"], "dense": [1]}, "2 finite numbers"),
        ({"user": 1, "items": ["a"], "dense": [1, 2], "sparse": {"moods": [1]}}, "declared features"),
        ({"user": 1.5, "items": ["a"], "dense": [1, 2]}, "string or an integer"),
        ({"user": 1, "items": ["a", True], "dense": [1, 2]}, "got True"),
    ],
)
def test_bad_recommender_requests_are_refused(request_: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_recommender(request_, RECS)


def test_hashed_ids_agree_between_the_vectorized_and_the_per_id_path() -> None:
    spec = RecommenderInput(name="r", users={"hash_buckets": 97}, items={"hash_buckets": 1 << 40})
    ints = [0, 1, -1, 2**63 - 1, -(2**63), 123456789012, 2**70 + 5]
    all_ints = decode_recommender({"user": 5, "items": ints[:-1]}, spec)["items"]
    mixed = decode_recommender({"user": 5, "items": [*ints, "a"]}, spec)["items"]
    assert all_ints.tolist() == mixed[:-2].tolist()
    assert len(set(mixed.tolist())) == len(ints) + 1  # a hash, not the id modulo the buckets
    assert 0 <= all_ints.min() and all_ints.max() < 1 << 40
