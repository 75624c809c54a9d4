"""Recommender features: ``{"user": id, "items": [ids], "sparse": {"feature":
[ids]}, "dense": [floats]}``, one request or a list.

Ids become indices through a declared vocabulary (index + 1; 0 is unknown) or
stable hashing into buckets. Jagged lists use the ``EmbeddingBag`` layout:
flat values plus per-request offsets, shifted across a batch. The model gets
``user [N], items [sum K], item_offsets [N]``, then ``values, offsets`` per
sparse feature in declared order, then ``dense [N, D]`` if declared.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from seedserve.codecs._common import Spec, as_batch
from seedserve.errors import InputTooLarge, InvalidInput

__all__ = ["IdMap", "SparseFeature", "RecommenderInput", "decode_recommender", "sample_recommender"]


class IdMap(Spec):
    """How ids become indices: a vocabulary, or hashing into buckets."""

    vocabulary: list[str | int] | None = Field(default=None, max_length=10_000_000)
    hash_buckets: int | None = Field(default=None, ge=1, le=2**40)

    @model_validator(mode="after")
    def _exactly_one(self) -> "IdMap":
        if (self.vocabulary is None) == (self.hash_buckets is None):
            raise ValueError("give exactly one of vocabulary or hash_buckets")
        return self

    def indices(self, ids: list[Any]) -> np.ndarray:
        if self.vocabulary is not None:
            table = self.id_table
            return np.fromiter((table.get(i, 0) for i in ids), dtype=np.int64, count=len(ids))
        assert self.hash_buckets is not None
        return np.fromiter((_stable_hash(i) % self.hash_buckets for i in ids), dtype=np.int64, count=len(ids))

    @cached_property
    def id_table(self) -> dict[Any, int]:
        """Id -> index, built once per spec (specs are immutable)."""
        return {v: i + 1 for i, v in enumerate(self.vocabulary or [])}


class SparseFeature(IdMap):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class RecommenderInput(Spec):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    kind: Literal["recommender"] = "recommender"
    users: IdMap
    items: IdMap
    sparse: list[SparseFeature] = Field(default_factory=list, max_length=256)
    dense_features: int = Field(default=0, ge=0, le=100_000)
    max_items: int = Field(default=1000, ge=1, le=1_000_000)
    max_ids_per_feature: int = Field(default=1000, ge=1, le=1_000_000)
    max_batch: int = Field(default=256, ge=1, le=100_000)


def _stable_hash(value: Any) -> int:
    # Python's hash() differs between processes; replicas must agree.
    return int.from_bytes(hashlib.blake2b(str(value).encode(), digest_size=8).digest(), "little")


def decode_recommender(value: Any, spec: RecommenderInput) -> dict[str, np.ndarray]:
    requests = as_batch(value, spec.name, spec.max_batch, dict)
    name = spec.name
    users, items, dense = [], [], []
    sparse: dict[str, list[list[Any]]] = {f.name: [] for f in spec.sparse}
    for i, request in enumerate(requests):
        if not isinstance(request, dict) or "user" not in request or not isinstance(request.get("items"), list):
            raise InvalidInput(f"input {name!r}: request {i} needs 'user' and a list 'items'", input=name)
        unknown = set(request) - {"user", "items", "sparse", "dense"}
        if unknown:
            raise InvalidInput(f"input {name!r}: request {i} has unknown field {sorted(unknown)[0]!r}", input=name)
        users.append(_scalar_id(request["user"], name, "user"))
        items.append(_ids(request["items"], name, "items", spec.max_items))
        features = request.get("sparse") or {}
        if not isinstance(features, dict) or set(features) - set(sparse):
            raise InvalidInput(
                f"input {name!r}: request {i} 'sparse' must map declared features {sorted(sparse)} to id lists", input=name
            )
        for feature in spec.sparse:
            sparse[feature.name].append(_ids(features.get(feature.name, []), name, feature.name, spec.max_ids_per_feature))
        dense.append(_dense(request.get("dense"), spec, i))
    result = {"user": spec.users.indices(users)}
    result["items"], result["item_offsets"] = _bags(items, spec.items)
    for feature in spec.sparse:
        result[f"{feature.name}_values"], result[f"{feature.name}_offsets"] = _bags(sparse[feature.name], feature)
    if spec.dense_features:
        result["dense"] = np.asarray(dense, dtype=np.float32)
    return result


def _scalar_id(value: Any, name: str, what: str) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput(f"input {name!r}: {what} id must be a string or an integer, got {value!r}"[:200], input=name)
    return value


def _ids(values: Any, name: str, what: str, limit: int) -> list[Any]:
    if not isinstance(values, list):
        raise InvalidInput(f"input {name!r}: {what} must be a list of ids", input=name)
    if len(values) > limit:
        raise InputTooLarge(
            f"input {name!r}: {len(values):,} {what} ids exceeds the limit of {limit:,}", input=name, limit=limit
        )
    return [_scalar_id(v, name, what) for v in values]


def _dense(values: Any, spec: RecommenderInput, i: int) -> list[float]:
    if not spec.dense_features:
        if values is not None:
            raise InvalidInput(f"input {spec.name!r}: request {i} sends 'dense' but none are declared", input=spec.name)
        return []
    ok = isinstance(values, list) and len(values) == spec.dense_features and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in values
    )
    if not ok:
        raise InvalidInput(
            f"input {spec.name!r}: request {i} 'dense' must be {spec.dense_features} finite numbers", input=spec.name
        )
    return values  # type: ignore[no-any-return]


def _bags(bags: list[list[Any]], id_map: IdMap) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(b) for b in bags), dtype=np.int64, count=len(bags))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    flat = [v for bag in bags for v in bag]
    return id_map.indices(flat), offsets


def sample_recommender(spec: RecommenderInput, batch: int = 1) -> dict[str, np.ndarray]:
    request: dict[str, Any] = {"user": 0, "items": [0, 1], "sparse": {f.name: [0] for f in spec.sparse}}
    if spec.dense_features:
        request["dense"] = [0.0] * spec.dense_features
    return decode_recommender([request] * batch, spec)
