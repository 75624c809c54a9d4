"""The registry store against the real embedded MongoDB-wire server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from gridfs.errors import NoFile

from seedserve.errors import InputTooLarge, NotFound
from seedserve.registry import KeyDoc, ModelStore, connect, default_version, hash_key, new_key
from seedserve.registry.documents import version_id
from tests.conftest import MongoServer
from tests.helpers import MLP_MANIFEST


async def _chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _run(mongo_server: MongoServer, scenario) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        client = connect(mongo_server.uri)
        try:
            await scenario(ModelStore(client[f"store_{uuid.uuid4().hex[:12]}"]))
        finally:
            await client.close()

    asyncio.run(main())


def test_key_hashes_are_read_back_for_every_key(mongo_server: MongoServer) -> None:
    keys = [new_key(), new_key()]

    async def scenario(store: ModelStore) -> None:
        artifact = await store.put_artifact(_chunks(b"abc"), filename="a", fmt="torchscript", max_bytes=10)
        await store.add_version("m", MLP_MANIFEST, artifact, _key(keys[0]))
        # Set the whole array: the embedded server's $push turns the existing elements into strings.
        both = [dict(_key(keys[0])), dict(_key(keys[1], "k2"))]
        await store._models.update_one({"_id": "m"}, {"$set": {"keys": both}})
        assert await store.key_hashes("m") == [hash_key(k) for k in keys]
        assert await store.key_hashes("absent") == []

    _run(mongo_server, scenario)


def test_artifacts_round_trip_with_size_and_sha256_and_respect_the_limit(mongo_server: MongoServer) -> None:
    data = bytes(range(256)) * 5000  # 1.28 MB: several GridFS chunks

    async def scenario(store: ModelStore) -> None:
        artifact = await store.put_artifact(_chunks(data, 65536), filename="a", fmt="torchscript", max_bytes=2 * 2**20)
        assert artifact["size"] == len(data)
        assert await store.read_artifact(artifact["file_id"]) == data
        with pytest.raises(InputTooLarge):
            await store.put_artifact(_chunks(data, 65536), filename="b", fmt="torchscript", max_bytes=100_000)

    _run(mongo_server, scenario)


def _key(key: str, id: str = "k1") -> KeyDoc:
    return KeyDoc(id=id, label="a", sha256=hash_key(key), created_at=datetime.now(UTC))


def test_registering_a_name_again_adds_a_version_and_keeps_the_first_key(mongo_server: MongoServer) -> None:
    first, second = new_key(), new_key()

    async def scenario(store: ModelStore) -> None:
        artifact = await store.put_artifact(_chunks(b"abc"), filename="a", fmt="torchscript", max_bytes=10)
        assert await store.add_version("again", MLP_MANIFEST, artifact, _key(first)) == (1, True)
        assert await store.add_version("again", MLP_MANIFEST, artifact, _key(second)) == (2, False)
        doc = await store.get("again")
        assert (doc["latest"], doc["pinned"], default_version(doc)) == (2, None, 2)
        assert await store.key_hashes("again") == [hash_key(first)]
        assert [v["version"] for v in await store.versions("again")] == [1, 2]
        assert (await store.get_version("again", 1))["manifest"] == MLP_MANIFEST
        with pytest.raises(NotFound, match="no version 3"):
            await store.get_version("again", 3)

    _run(mongo_server, scenario)


def test_concurrent_registrations_of_one_name_get_distinct_versions(mongo_server: MongoServer) -> None:
    async def scenario(store: ModelStore) -> None:
        artifact = await store.put_artifact(_chunks(b"abc"), filename="a", fmt="torchscript", max_bytes=10)
        results = await asyncio.gather(*(store.add_version("race", MLP_MANIFEST, artifact, _key(new_key()))
                                         for _ in range(4)))
        assert sorted(version for version, _ in results) == [1, 2, 3, 4]
        assert sum(created for _, created in results) == 1
        assert (await store.get("race"))["latest"] == 4
        assert len(await store.key_hashes("race")) == 1

    _run(mongo_server, scenario)


def test_a_pin_serves_an_older_version_and_unpinning_follows_the_latest(mongo_server: MongoServer) -> None:
    async def scenario(store: ModelStore) -> None:
        artifact = await store.put_artifact(_chunks(b"abc"), filename="a", fmt="torchscript", max_bytes=10)
        for _ in range(3):
            await store.add_version("p", MLP_MANIFEST, artifact, _key(new_key()))
        assert default_version(await store.pin("p", 1)) == 1
        with pytest.raises(NotFound):
            await store.pin("p", 9)
        assert default_version(await store.get("p")) == 1  # a refused pin changes nothing
        assert default_version(await store.pin("p", None)) == 3
        with pytest.raises(NotFound):
            await store.pin("absent", None)

    _run(mongo_server, scenario)


def test_deleting_a_model_removes_every_version_and_artifact_and_twice_is_not_found(mongo_server: MongoServer) -> None:
    async def scenario(store: ModelStore) -> None:
        ids = []
        for _ in range(2):
            artifact = await store.put_artifact(_chunks(b"abc"), filename="a", fmt="torchscript", max_bytes=10)
            ids.append(artifact["file_id"])
            await store.add_version("once", MLP_MANIFEST, artifact, _key(new_key()))
        assert await store.exists("once")
        await store.delete("once")
        with pytest.raises(NotFound):
            await store.delete("once")
        assert not await store.exists("once")
        assert await store.versions("once") == []
        for file_id in ids:
            with pytest.raises(NoFile):
                await store.read_artifact(file_id)

    _run(mongo_server, scenario)


def test_a_stray_version_is_hidden_replaced_and_collected_once_old(mongo_server: MongoServer) -> None:
    """A registration cut off between storing its version and counting it in
    its model (the database died) leaves a stray version document: it is not
    listed or served; the next registration of the name takes its number once
    it is old enough; the collector deletes one whose model never came."""
    name, orphan = f"stray-{uuid.uuid4().hex[:8]}", f"lost-{uuid.uuid4().hex[:8]}"

    async def scenario(store: ModelStore) -> None:
        artifact = await store.put_artifact(_chunks(b"abc"), filename="a", fmt="torchscript", max_bytes=10)
        assert await store.add_version(name, MLP_MANIFEST, artifact, _key(new_key())) == (1, True)
        old = datetime.now(UTC) - timedelta(hours=2)
        for model, version in ((name, 2), (orphan, 1)):
            await store._versions.insert_one({"_id": version_id(model, version), "name": model, "version": version,
                                              "manifest": {"stray": True}, "artifact": dict(artifact),
                                              "created_at": old})
        assert [v["version"] for v in await store.versions(name)] == [1]
        assert orphan not in {v["name"] for v in await store.versions()}
        with pytest.raises(NotFound):
            await store.get_version(name, 2)

        assert await store.add_version(name, MLP_MANIFEST, artifact, _key(new_key())) == (2, False)
        assert (await store.get_version(name, 2))["manifest"] == MLP_MANIFEST  # the new one, not the stray
        assert await store.collect_stray_versions(older_than_s=3600) >= 1
        assert await store._versions.find_one({"_id": version_id(orphan, 1)}) is None
        assert [v["version"] for v in await store.versions(name)] == [1, 2]

    _run(mongo_server, scenario)
