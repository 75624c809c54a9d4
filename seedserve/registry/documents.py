"""The shape of what seedserve keeps in MongoDB."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NotRequired, TypedDict

from bson import ObjectId

__all__ = ["KeyDoc", "ArtifactDoc", "ModelDoc", "VersionDoc", "version_id", "default_version"]


class KeyDoc(TypedDict):
    """One secret key of a model; only its hash is stored."""

    id: str
    label: str
    sha256: str
    created_at: datetime


class ArtifactDoc(TypedDict):
    """A model artifact in GridFS."""

    file_id: ObjectId
    format: str
    size: int
    sha256: str


class ModelDoc(TypedDict):
    """A registered model (collection ``models``, ``_id`` = name): its keys and
    which version its endpoint serves, ``pinned`` if set, else ``latest``."""

    _id: str
    name: str
    #: The account that registered it; only they see and manage it.
    owner: str
    latest: int
    pinned: int | None
    keys: list[KeyDoc]
    #: Bumped by each change of ``keys`` (optimistic concurrency).
    keys_rev: NotRequired[int]
    created_at: datetime
    updated_at: datetime


class VersionDoc(TypedDict):
    """One version of a model (collection ``versions``, ``_id`` = ``name@version``):
    what it is and its artifact."""

    _id: str
    name: str
    version: int
    manifest: dict[str, Any]
    artifact: ArtifactDoc
    #: The profiler's report (seedserve.profiler.profile.ModelProfile), or {"error": ...}.
    profile: dict[str, Any] | None
    #: Worker type -> latency of model calls measured by its replicas (p50_ms, p99_ms, mean_items, calls).
    measured: NotRequired[dict[str, dict[str, Any]]]
    created_at: datetime


def version_id(name: str, version: int) -> str:
    """A version document's ``_id``; ``@`` cannot occur in a model name."""
    return f"{name}@{version}"


def default_version(doc: ModelDoc) -> int:
    """The version a model's endpoint serves."""
    return doc["pinned"] or doc["latest"]
