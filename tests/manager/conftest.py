"""The manager on real uvicorn over real HTTP, on the real embedded database server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pymongo
import pytest
import uvicorn

from seedserve.manager_app import create_app
from seedserve.settings import Settings
from tests.conftest import MongoServer
from tests.helpers import free_port


@dataclass
class Manager:
    url: str
    token: str
    db: pymongo.database.Database[dict[str, object]]


@pytest.fixture(scope="module")
def manager(mongo_server: MongoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    database = f"manager_{free_port()}"
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("manager"),
        mongo_uri=mongo_server.uri,
        database=database,
        max_artifact_bytes=256 * 1024,
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, "adm_test"), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(mongo_server.uri)
    yield Manager(f"http://127.0.0.1:{port}", "adm_test", client[database])
    server.should_exit = True
    thread.join(10)
    client.close()
