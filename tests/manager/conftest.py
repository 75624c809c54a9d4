"""The manager on real uvicorn over real HTTP, on the real embedded database server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@contextmanager
def serve_manager(mongo_server: MongoServer, data_dir: Path, **settings: Any) -> Iterator[Manager]:
    """A manager on real uvicorn (127.0.0.1, a free port) over its own database
    on the real database server; ``settings`` override the test defaults."""
    database = f"manager_{free_port()}"
    config = Settings(
        **{"data_dir": data_dir, "mongo_uri": mongo_server.uri, "database": database,
           "max_artifact_bytes": 256 * 1024, **settings}
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config, "adm_test"), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(mongo_server.uri)
    try:
        yield Manager(f"http://127.0.0.1:{port}", "adm_test", client[database])
    finally:
        server.should_exit = True
        thread.join(10)
        client.close()


@pytest.fixture(scope="module")
def manager(mongo_server: MongoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    with serve_manager(mongo_server, tmp_path_factory.mktemp("manager")) as running:
        yield running
