"""The model registry on MongoDB: documents in ``models``, artifacts in GridFS.

Every write leaves the registry whole: an artifact is uploaded before its
document is inserted and removed again if the insert fails, and a delete
removes the document (so serving stops) before the artifact.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

from bson import ObjectId
from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError

from seedserve.errors import AlreadyExists, InputTooLarge, NotFound, Unavailable
from seedserve.registry.documents import ArtifactDoc, KeyDoc, ModelDoc

__all__ = ["ModelStore", "connect", "new_model_doc"]

logger = logging.getLogger("seedserve.registry")


def connect(uri: str, timeout_ms: int = 5000) -> AsyncMongoClient[dict[str, Any]]:
    """An async client that fails fast (``timeout_ms``) when the server is down."""
    return AsyncMongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, tz_aware=True)


@asynccontextmanager
async def _database_errors() -> AsyncIterator[None]:
    try:
        yield
    except ConnectionFailure as exc:
        raise Unavailable("the database is unreachable; retry in a few seconds") from exc


class ModelStore:
    """Registered models and their artifacts."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._models = db["models"]
        self._bucket = AsyncGridFSBucket(db, bucket_name="artifacts")

    async def ping(self) -> None:
        """Raise :class:`Unavailable` unless the database answers."""
        async with _database_errors():
            await self._models.database.command("ping")

    async def list(self) -> list[ModelDoc]:
        async with _database_errors():
            return [cast(ModelDoc, doc) async for doc in self._models.find({}).sort("_id", 1)]

    async def get(self, name: str) -> ModelDoc:
        async with _database_errors():
            doc = await self._models.find_one({"_id": name})
        if doc is None:
            raise NotFound(f"no model named {name!r}; list models with GET /api/models", input="name")
        return cast(ModelDoc, doc)

    async def exists(self, name: str) -> bool:
        async with _database_errors():
            return await self._models.find_one({"_id": name}, {"_id": 1}) is not None

    async def insert(self, doc: ModelDoc) -> None:
        """Insert a new model; :class:`AlreadyExists` if the name is taken."""
        try:
            async with _database_errors():
                await self._models.insert_one(dict(doc))
        except DuplicateKeyError:
            raise AlreadyExists(
                f"a model named {doc['name']!r} is already registered; choose another name or delete it first",
                input="name",
            ) from None

    async def delete(self, name: str) -> ModelDoc:
        """Remove a model and its artifact; returns what was removed."""
        async with _database_errors():
            doc = await self._models.find_one_and_delete({"_id": name})
            if doc is None:
                raise NotFound(f"no model named {name!r}", input="name")
            try:
                await self._bucket.delete(doc["artifact"]["file_id"])
            except NoFile:
                pass
        return cast(ModelDoc, doc)

    async def put_artifact(self, chunks: AsyncIterable[bytes], *, filename: str, fmt: str, max_bytes: int) -> ArtifactDoc:
        """Stream ``chunks`` into GridFS, refusing more than ``max_bytes``."""
        digest = hashlib.sha256()
        size = 0
        async with _database_errors():
            upload = self._bucket.open_upload_stream(filename, metadata={"format": fmt})
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise InputTooLarge(
                            f"the artifact exceeds the limit of {max_bytes:,} bytes",
                            input="artifact",
                            limit=max_bytes,
                        )
                    digest.update(chunk)
                    await upload.write(chunk)
                await upload.close()
            except BaseException:
                try:
                    await upload.abort()
                except PyMongoError:
                    # The embedded server keeps an unfinished upload unwritten and
                    # reports the abort's delete as "not found"; the real error is
                    # the one raised below.
                    logger.warning("aborting the upload of %s failed", filename, exc_info=True)
                raise
        return ArtifactDoc(file_id=upload._id, format=fmt, size=size, sha256=digest.hexdigest())

    async def delete_artifact(self, file_id: ObjectId) -> None:
        try:
            async with _database_errors():
                await self._bucket.delete(file_id)
        except NoFile:
            pass

    async def read_artifact(self, file_id: ObjectId) -> bytes:
        async with _database_errors():
            stream = await self._bucket.open_download_stream(file_id)
            return cast(bytes, await stream.read())

    async def key_hashes(self, name: str) -> list[str]:
        """The stored key hashes of ``name`` (empty if the model is gone)."""
        # Project the whole array: the embedded server ignores dotted projections
        # like "keys.sha256" and would return no keys at all.
        async with _database_errors():
            doc = await self._models.find_one({"_id": name}, {"keys": 1})
        return [key["sha256"] for key in (doc or {}).get("keys", [])]


def new_model_doc(name: str, manifest: dict[str, Any], artifact: ArtifactDoc, key: KeyDoc) -> ModelDoc:
    """The document of a freshly registered model (version 1)."""
    now = datetime.now(UTC)
    return ModelDoc(
        _id=name,
        name=name,
        version=1,
        manifest=manifest,
        artifact=artifact,
        keys=[key],
        created_at=now,
        updated_at=now,
    )

