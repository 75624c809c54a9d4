"""The registry store against the real embedded MongoDB-wire server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from seedserve.errors import AlreadyExists, InputTooLarge, NotFound
from seedserve.registry import KeyDoc, ModelStore, connect, hash_key, new_key, new_model_doc
from tests.conftest import MongoServer
from tests.helpers import MLP_MANIFEST, free_port


async def _chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _run(mongo_server: MongoServer, scenario) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        client = connect(mongo_server.uri)
        try:
            await scenario(ModelStore(client[f"store_{free_port()}"]))
        finally:
            await client.close()

    asyncio.run(main())


def test_key_hashes_are_read_back_for_every_key(mongo_server: MongoServer) -> None:
    keys = [new_key(), new_key()]

    async def scenario(store: ModelStore) -> None:
        artifact = await store.put_artifact(_chunks(b"abc"), filename="a", fmt="torchscript", max_bytes=10)
        doc = new_model_doc("m", MLP_MANIFEST, artifact,
                            KeyDoc(id="k1", label="a", sha256=hash_key(keys[0]), created_at=datetime.now(UTC)))
        doc["keys"].append(KeyDoc(id="k2", label="b", sha256=hash_key(keys[1]), created_at=datetime.now(UTC)))
        await store.insert(doc)
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


def test_a_name_is_registered_once_and_deleting_twice_is_not_found(mongo_server: MongoServer) -> None:
    async def scenario(store: ModelStore) -> None:
        artifact = await store.put_artifact(_chunks(b"abc"), filename="a", fmt="torchscript", max_bytes=10)
        key = KeyDoc(id="k1", label="a", sha256=hash_key(new_key()), created_at=datetime.now(UTC))
        await store.insert(new_model_doc("once", MLP_MANIFEST, artifact, key))
        with pytest.raises(AlreadyExists):
            await store.insert(new_model_doc("once", MLP_MANIFEST, artifact, key))
        assert await store.exists("once")
        await store.delete("once")
        with pytest.raises(NotFound):
            await store.delete("once")
        assert not await store.exists("once")

    _run(mongo_server, scenario)
