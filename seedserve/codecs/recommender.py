"""Recommender features: ``{"user": id, "items": [ids], "sparse": {"feature":
[ids]}, "dense": [floats]}``, one request or a list.

Ids become indices through a declared vocabulary (index + 1; 0 is unknown) or
stable hashing into buckets: integer ids (int64) by the splitmix64 finalizer,
vectorized, and string ids by 8-byte BLAKE2b, so every replica and every
process agrees (Python's ``hash()`` of a string does not). Jagged lists use the ``EmbeddingBag`` layout:
flat values plus per-request offsets, shifted across a batch. The model gets
``user [N], items [sum K], item_offsets [N]``, then ``values, offsets`` per
sparse feature in declared order, then ``dense [N, D]`` if declared.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from itertools import chain
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from seedserve.codecs._common import InputBase, Spec, as_batch
from seedserve.codecs.kind import Form, Kind
from seedserve.errors import InputTooLarge, InvalidInput

__all__ = ["IdMap", "SparseFeature", "RecommenderInput", "decode_recommender", "sample_recommender", "KIND"]


class IdMap(Spec):
    """How ids become indices: a vocabulary, or hashing into buckets."""

    vocabulary: list[str | int] | None = Field(default=None, max_length=10_000_000)
    hash_buckets: int | None = Field(default=None, ge=1, le=2**40)

    @model_validator(mode="after")
    def _exactly_one(self) -> IdMap:
        if (self.vocabulary is None) == (self.hash_buckets is None):
            raise ValueError("give exactly one of vocabulary or hash_buckets")
        return self

    def indices(self, ids: list[Any], *, all_int: bool | None = None) -> np.ndarray:
        if self.vocabulary is not None:
            table = self.id_table
            return np.fromiter((table.get(i, 0) for i in ids), dtype=np.int64, count=len(ids))
        assert self.hash_buckets is not None
        return (stable_hashes(ids, all_int=all_int) % np.uint64(self.hash_buckets)).astype(np.int64)

    @cached_property
    def id_table(self) -> dict[Any, int]:
        """Id -> index, built once per spec (specs are immutable)."""
        return {v: i + 1 for i, v in enumerate(self.vocabulary or [])}


class SparseFeature(IdMap):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class RecommenderInput(InputBase):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    kind: Literal["recommender"] = "recommender"
    users: IdMap
    items: IdMap
    sparse: list[SparseFeature] = Field(default_factory=list, max_length=256)
    dense_features: int = Field(default=0, ge=0, le=100_000)
    max_items: int = Field(default=1000, ge=1, le=1_000_000)
    max_ids_per_feature: int = Field(default=1000, ge=1, le=1_000_000)
    max_batch: int = Field(default=256, ge=1, le=100_000)


_MASK64 = (1 << 64) - 1


def stable_hashes(ids: list[str | int], *, all_int: bool | None = None) -> np.ndarray:
    """A uint64 hash per id, the same in every process: splitmix64 for
    integers (vectorized when every id is one), BLAKE2b for strings.
    ``all_int`` says what a caller already knows about the types."""
    if all_int is None:
        all_int = set(map(type, ids)) <= {int}
    if ids and all_int:
        try:
            z = np.asarray(ids, dtype=np.int64).view(np.uint64)
        except OverflowError:  # an id beyond int64: the per-id path wraps it the same way
            pass
        else:
            z = z + np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            return z ^ (z >> np.uint64(31))
    return np.fromiter((_hash_one(i) for i in ids), dtype=np.uint64, count=len(ids))


def _hash_one(value: str | int) -> int:
    if isinstance(value, str):
        return int.from_bytes(hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
    z = (value + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


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
        users.append(request["user"])
        items.append(_ids(request["items"], name, "items", spec.max_items))
        features = request.get("sparse") or {}
        if not isinstance(features, dict) or set(features) - set(sparse):
            raise InvalidInput(
                f"input {name!r}: request {i} 'sparse' must map declared features {sorted(sparse)} to id lists",
                input=name
            )
        for feature in spec.sparse:
            ids = _ids(features.get(feature.name, []), name, feature.name, spec.max_ids_per_feature)
            sparse[feature.name].append(ids)
        dense.append(_dense(request.get("dense"), spec, i))
    result = {"user": spec.users.indices(users, all_int=_check_ids(users, name, "user"))}
    result["items"], result["item_offsets"] = _bags(items, spec.items, name, "items")
    for feature in spec.sparse:
        result[f"{feature.name}_values"], result[f"{feature.name}_offsets"] = _bags(
            sparse[feature.name], feature, name, feature.name
        )
    if spec.dense_features:
        result["dense"] = np.asarray(dense, dtype=np.float32)
    return result


def _ids(values: Any, name: str, what: str, limit: int) -> list[Any]:
    if not isinstance(values, list):
        raise InvalidInput(f"input {name!r}: {what} must be a list of ids", input=name)
    if len(values) > limit:
        raise InputTooLarge(
            f"input {name!r}: {len(values):,} {what} ids exceeds the limit of {limit:,}", input=name, limit=limit
        )
    return values


def _check_ids(values: list[Any], name: str, what: str) -> bool:
    """Every id a string or an integer, not a bool: one scan of the types.
    Returns whether all are integers."""
    kinds = set(map(type, values))
    if not kinds <= {int, str}:
        bad = next(v for v in values if type(v) not in (int, str))
        raise InvalidInput(f"input {name!r}: {what} id must be a string or an integer, got {bad!r}"[:200], input=name)
    return str not in kinds


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


def _bags(bags: list[list[Any]], id_map: IdMap, name: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter(map(len, bags), dtype=np.int64, count=len(bags))
    offsets = np.zeros(len(bags), dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    flat = list(chain.from_iterable(bags))
    return id_map.indices(flat, all_int=_check_ids(flat, name, what)), offsets


def sample_recommender(spec: RecommenderInput, batch: int = 1) -> dict[str, np.ndarray]:
    request: dict[str, Any] = {"user": 0, "items": [0, 1], "sparse": {f.name: [0] for f in spec.sparse}}
    if spec.dense_features:
        request["dense"] = [0.0] * spec.dense_features
    return decode_recommender([request] * batch, spec)


KIND = Kind(
    name="recommender", spec=RecommenderInput, decoder="seedserve.codecs.recommender:decode_recommender",
    sampler="seedserve.codecs.recommender:sample_recommender", wire="json",
    batching="seedserve.codecs.batching:BAGS", doc="{user, items, sparse?, dense?} or a list of requests",
    form=Form("json", example=lambda spec: {"user": 1, "items": [1, 2, 3]}),
)
