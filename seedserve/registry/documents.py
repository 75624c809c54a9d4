"""The shape of what seedserve keeps in MongoDB."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

from bson import ObjectId

__all__ = ["KeyDoc", "ArtifactDoc", "ModelDoc"]


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
    """A registered model (collection ``models``, ``_id`` = name)."""

    _id: str
    name: str
    version: int
    manifest: dict[str, Any]
    artifact: ArtifactDoc
    keys: list[KeyDoc]
    created_at: datetime
    updated_at: datetime
