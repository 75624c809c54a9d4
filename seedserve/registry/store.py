"""The model registry on MongoDB: models in ``models``, their versions in
``versions``, artifacts in GridFS.

Every write leaves the registry whole: an artifact is uploaded before its
version document is inserted, the version before the model points at it, and
each is removed again if a later step fails (once the database is back, if
its outage was the failure; until then a version the model does not count is
neither listed nor served). A delete removes the model
document first (so serving stops), then its versions, then their artifacts.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from bson import ObjectId
from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError

from seedserve.errors import AlreadyExists, InputTooLarge, NotFound, Unavailable
from seedserve.registry.documents import ArtifactDoc, KeyDoc, ModelDoc, VersionDoc, version_id

__all__ = ["ADMIN", "ModelStore", "connect", "database_errors"]

logger = logging.getLogger("seedserve.registry")

#: The account that the admin token (``<data dir>/admin-token``) signs in as.
ADMIN = "admin"


#: A version document this old and still not counted by its model is a
#: leftover (a registration's two writes are milliseconds apart).
STRAY_AGE_S = 60.0


def _name_taken(name: str) -> AlreadyExists:
    return AlreadyExists(f"the model name {name!r} is taken by another account; choose another name", input="name")


def connect(uri: str, timeout_ms: int = 5000) -> AsyncMongoClient[dict[str, Any]]:
    """An async client that fails fast (``timeout_ms``) when the server is
    down, and within four times that when it hangs mid-answer."""
    return AsyncMongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
                            socketTimeoutMS=4 * timeout_ms, tz_aware=True)


@asynccontextmanager
async def database_errors() -> AsyncIterator[None]:
    try:
        yield
    except ConnectionFailure as exc:
        raise Unavailable("the database is unreachable; retry in a few seconds") from exc


class ModelStore:
    """Registered models and their artifacts."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._models = db["models"]
        self._versions = db["versions"]
        self._calibrations = db["calibrations"]
        self._bucket = AsyncGridFSBucket(db, bucket_name="artifacts")
        self._cleanups: set[asyncio.Task[None]] = set()  # held so they are not garbage-collected

    async def ping(self) -> None:
        """Raise :class:`Unavailable` unless the database answers."""
        async with database_errors():
            await self._models.database.command("ping")

    async def list(self, owner: str | None = None) -> list[ModelDoc]:
        """Every model, or ``owner``'s."""
        async with database_errors():
            found = self._models.find({} if owner is None else {"owner": owner}).sort("_id", 1)
            return [cast(ModelDoc, doc) async for doc in found]

    async def serving_marker(self) -> builtins.list[tuple[str, int, int | None]]:
        """Each model's name, latest and pinned version: it changes whenever
        what should be served does (a registration, a pin, a delete), and is
        cheap enough to poll often (the reconciler does)."""
        async with database_errors():
            found = [doc async for doc in self._models.find({}, {"latest": 1, "pinned": 1})]
        return sorted((str(doc["_id"]), int(doc.get("latest", 0)), doc.get("pinned")) for doc in found)

    async def get(self, name: str, owner: str | None = None) -> ModelDoc:
        """The model ``name``; with ``owner``, only if it is theirs: another
        user's model is as absent as one never registered."""
        async with database_errors():
            doc = await self._models.find_one({"_id": name})
        if doc is None or (owner is not None and doc.get("owner", ADMIN) != owner):
            raise NotFound(f"you have no model named {name!r}; list yours with GET /api/models", input="name")
        return cast(ModelDoc, doc)

    async def adopt_unowned(self) -> None:
        """Give models registered before accounts existed to the admin account."""
        async with database_errors():
            await self._models.update_many({"owner": {"$exists": False}}, {"$set": {"owner": ADMIN}})

    async def exists(self, name: str) -> bool:
        async with database_errors():
            return await self._models.find_one({"_id": name}, {"_id": 1}) is not None

    async def check_name_free(self, name: str, owner: str) -> None:
        """Refuse (409) a name that another account holds."""
        async with database_errors():
            model = await self._models.find_one({"_id": name}, {"owner": 1})
        if model is not None and model.get("owner", ADMIN) != owner:
            raise _name_taken(name)

    async def versions(self, name: str | None = None) -> builtins.list[VersionDoc]:
        """Every version of ``name`` (of every model if None), oldest first;
        not a stray one (see :meth:`collect_stray_versions`)."""
        async with database_errors():
            docs = await self._version_docs(name)
            latest = await self._latest({} if name is None else {"_id": name})
        return [doc for doc in docs if doc["version"] <= latest.get(doc["name"], 0)]

    async def _version_docs(self, name: str | None) -> builtins.list[VersionDoc]:
        found = self._versions.find({} if name is None else {"name": name})
        docs = [cast(VersionDoc, doc) async for doc in found]
        return sorted(docs, key=lambda doc: (doc["name"], doc["version"]))

    async def _latest(self, query: dict[str, Any]) -> dict[str, int]:
        return {doc["_id"]: int(doc.get("latest", 0)) async for doc in self._models.find(query, {"latest": 1})}

    async def get_version(self, name: str, version: int) -> VersionDoc:
        async with database_errors():
            doc = await self._versions.find_one({"_id": version_id(name, version)})
            if doc is not None and version > (await self._latest({"_id": name})).get(name, 0):
                doc = None  # a stray: its registration failed
        if doc is None:
            raise NotFound(
                f"model {name!r} has no version {version}; list them with GET /api/models/{name}/versions",
                input="version",
            )
        return cast(VersionDoc, doc)

    async def add_version(
        self, name: str, manifest: dict[str, Any], artifact: ArtifactDoc, key: KeyDoc,
        profile: dict[str, Any] | None = None, *, owner: str = ADMIN,
    ) -> tuple[int, bool]:
        """Store ``artifact`` as the next version of ``name``, creating the
        model (owned by ``owner``, with ``key``) if it is new. Returns the
        version and whether the model was created; the key is stored only then.
        A name another user holds is refused before anything is written."""
        now = datetime.now(UTC)
        version = await self._insert_next_version(name, manifest, artifact, profile, owner, now)
        try:
            async with database_errors():
                result = await self._models.update_one(
                    {"_id": name, "owner": owner},
                    {
                        "$max": {"latest": version},
                        "$set": {"updated_at": now},
                        "$setOnInsert": {"name": name, "pinned": None, "keys": [dict(key)], "keys_rev": 0,
                                         "created_at": now},
                    },
                    upsert=True,
                )
        except BaseException as exc:
            await self._undo_version(name, version, artifact)
            if isinstance(exc, DuplicateKeyError):  # another user created the name meanwhile
                raise _name_taken(name) from None
            raise
        return version, result.upserted_id is not None

    async def _insert_next_version(
        self, name: str, manifest: dict[str, Any], artifact: ArtifactDoc, profile: dict[str, Any] | None,
        owner: str, now: datetime,
    ) -> int:
        """Insert the version document after the model's latest; the number it got."""
        for _ in range(8):  # concurrent registrations of one name race for each number
            async with database_errors():
                model = await self._models.find_one({"_id": name}, {"latest": 1, "owner": 1})
            if model is not None and model.get("owner", ADMIN) != owner:
                raise _name_taken(name)
            version = (model["latest"] if model else 0) + 1
            doc = VersionDoc(_id=version_id(name, version), name=name, version=version, manifest=manifest,
                             artifact=artifact, profile=profile, created_at=now)
            try:
                async with database_errors():
                    await self._versions.insert_one(dict(doc))
                return int(version)
            except DuplicateKeyError:
                async with database_errors():
                    await self._remove_stray(name, version, older_than_s=STRAY_AGE_S)
        raise Unavailable(f"too many concurrent registrations of {name!r}; retry")

    async def _undo_version(self, name: str, version: int, artifact: ArtifactDoc) -> None:
        """Remove a version whose model document could not be written; later, if the database is away."""
        try:
            await self._versions.delete_one({"_id": version_id(name, version)})
        except PyMongoError:  # the database went away: remove it once it is back
            logger.warning("version %d of %s is left over from a failed registration; removing it once the "
                           "database is back", version, name)
            task = asyncio.get_running_loop().create_task(
                self._remove_when_back(name, version, artifact["file_id"]))
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)

    async def update_keys(self, name: str, owner: str,
                          change: Callable[[builtins.list[KeyDoc]], builtins.list[KeyDoc]]) -> builtins.list[KeyDoc]:
        """Replace the keys of ``owner``'s model ``name`` by ``change(keys)``.
        Optimistic: a concurrent change makes this one start over."""
        for _ in range(8):
            doc = await self.get(name, owner)
            keys = change([cast(KeyDoc, dict(key)) for key in doc["keys"]])
            async with database_errors():
                # The whole array is set: the embedded server garbles $push into arrays of documents.
                result = await self._models.update_one(
                    {"_id": name, "keys_rev": doc.get("keys_rev")},
                    {"$set": {"keys": [dict(key) for key in keys], "updated_at": datetime.now(UTC)},
                     "$inc": {"keys_rev": 1}},
                )
            if result.matched_count:
                return keys
        raise Unavailable(f"the keys of {name!r} are changing concurrently; retry")

    async def pin(self, name: str, version: int | None, owner: str = ADMIN) -> ModelDoc:
        """Serve ``version`` at the model's endpoint, or the latest if None."""
        await self.get(name, owner)
        if version is not None:
            await self.get_version(name, version)
        async with database_errors():
            doc = await self._models.find_one_and_update(
                {"_id": name, "owner": owner}, {"$set": {"pinned": version, "updated_at": datetime.now(UTC)}},
                return_document=ReturnDocument.AFTER,
            )
        if doc is None:
            raise NotFound(f"you have no model named {name!r}", input="name")
        return cast(ModelDoc, doc)

    async def delete(self, name: str, owner: str = ADMIN) -> ModelDoc:
        """Remove ``owner``'s model, its versions and their artifacts; returns the model."""
        async with database_errors():
            doc = await self._models.find_one_and_delete({"_id": name, "owner": owner})
            if doc is None:
                raise NotFound(f"you have no model named {name!r}", input="name")
        async with database_errors():
            versions = await self._version_docs(name)  # strays too
        for version in versions:
            async with database_errors():
                await self._versions.delete_one({"_id": version["_id"]})
            await self.delete_artifact(version["artifact"]["file_id"])
        return cast(ModelDoc, doc)

    async def put_artifact(self, chunks: AsyncIterable[bytes], *, filename: str, fmt: str,
                           max_bytes: int) -> ArtifactDoc:
        """Stream ``chunks`` into GridFS, refusing more than ``max_bytes``."""
        digest = hashlib.sha256()
        size = 0
        async with database_errors():
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

    async def _remove_stray(self, name: str, version: int, *, older_than_s: float = 0.0,
                            file_id: ObjectId | None = None) -> bool:
        """Delete version ``version`` of ``name`` if it is stray: numbered past
        the model's latest, stored more than ``older_than_s`` ago (so not a
        registration between its two writes), and with ``file_id``'s artifact
        if given (so not another registration's version since)."""
        doc = await self._versions.find_one({"_id": version_id(name, version)})
        if doc is None or version <= (await self._latest({"_id": name})).get(name, 0):
            return False
        if file_id is not None and doc["artifact"]["file_id"] != file_id:
            return False
        if _as_utc(doc["created_at"]) > datetime.now(UTC) - timedelta(seconds=older_than_s):
            return False
        await self._versions.delete_one({"_id": doc["_id"]})
        logger.info("removed version %d of %s, left over from a failed registration", version, name)
        return True

    async def _remove_when_back(self, name: str, version: int, file_id: ObjectId, give_up_s: float = 3600) -> None:
        deadline = datetime.now(UTC) + timedelta(seconds=give_up_s)
        while datetime.now(UTC) < deadline:
            try:
                await self._remove_stray(name, version, file_id=file_id)
                return
            except PyMongoError:
                await asyncio.sleep(1.0)

    async def collect_stray_versions(self, older_than_s: float) -> int:
        """Delete version documents no model counts, stored more than
        ``older_than_s`` ago: a registration cut off between storing its
        version and pointing its model at it (the database or the manager
        died) leaves one, numbered past the model's latest or with no model.
        Their artifacts then go with :meth:`collect_orphan_artifacts`.
        Returns how many were deleted."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        async with database_errors():
            latest = await self._latest({})
            stray = [doc["_id"] async for doc in self._versions.find({}, {"name": 1, "version": 1, "created_at": 1})
                     if doc["version"] > latest.get(doc["name"], 0) and _as_utc(doc["created_at"]) < cutoff]
            for version in stray:
                await self._versions.delete_one({"_id": version})
        return len(stray)

    async def collect_orphan_artifacts(self, older_than_s: float) -> int:
        """Delete artifacts no version refers to, stored more than
        ``older_than_s`` ago: left by a manager killed between storing an
        artifact and its version (younger ones may belong to a registration
        in progress on another manager). Returns how many were collected."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        async with database_errors():
            used = {v["artifact"]["file_id"] async for v in self._versions.find({}, {"artifact": 1})}
            stored = [(f._id, _as_utc(f.upload_date)) async for f in self._bucket.find({})]
        orphans = [file_id for file_id, uploaded in stored if file_id not in used and uploaded < cutoff]
        for file_id in orphans:
            await self.delete_artifact(file_id)
        return len(orphans)

    async def delete_artifact(self, file_id: ObjectId) -> None:
        try:
            async with database_errors():
                await self._bucket.delete(file_id)
        except NoFile:
            pass

    async def read_artifact(self, file_id: ObjectId) -> bytes:
        async with database_errors():
            stream = await self._bucket.open_download_stream(file_id)
            return await stream.read()

    async def record_measured(self, name: str, version: int, worker_type: str, stats: dict[str, float]) -> None:
        """A replica's measured call latency for one version on one worker type."""
        async with database_errors():
            doc = await self._versions.find_one({"_id": version_id(name, version)}, {"measured": 1})
            if doc is None:
                return  # deleted meanwhile
            measured = dict(doc.get("measured") or {})
            measured[worker_type] = {**stats, "updated_at": datetime.now(UTC).isoformat()}
            # The whole map is set (read, modify, write): a $set of a whole field is the update form
            # every server here handles, where the embedded one garbles $push into arrays of documents.
            await self._versions.update_one({"_id": version_id(name, version)}, {"$set": {"measured": measured}})

    async def calibrations(self) -> dict[str, dict[str, Any]]:
        """The latest calibration of each worker type, by type name."""
        async with database_errors():
            return {doc["_id"]: doc async for doc in self._calibrations.find({})}

    async def put_calibration(self, worker_type: str, calibration: dict[str, Any]) -> None:
        async with database_errors():
            await self._calibrations.replace_one({"_id": worker_type}, {"_id": worker_type, **calibration}, upsert=True)

    async def key_hashes(self, name: str) -> builtins.list[str]:
        """The stored key hashes of ``name`` (empty if the model is gone)."""
        # Project the whole array: the embedded server ignores dotted projections
        # like "keys.sha256" and would return no keys at all.
        async with database_errors():
            doc = await self._models.find_one({"_id": name}, {"keys": 1})
        return [key["sha256"] for key in (doc or {}).get("keys", [])]


def _as_utc(value: datetime | str) -> datetime:
    """A GridFS upload date: a naive UTC datetime from MongoDB, an ISO string
    from the embedded server."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
