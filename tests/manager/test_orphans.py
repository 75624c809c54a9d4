"""A manager killed in the middle of a registration leaves nothing behind once
a manager starts again: the killed one's upload directory is removed, and
artifacts no version refers to (stored just before a kill, or chunks of an
upload that never finished) are collected once they are old enough not to
belong to a registration still in progress elsewhere. The managers here are
real uvicorn processes, SIGKILLed for real, on the real embedded database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gridfs
import httpx
import pymongo
import pytest

from seedserve.client import ManagerClient
from tests.conftest import MongoServer
from tests.helpers import MLP_MANIFEST, eventually, free_port, make_mlp, save_torchscript


class ManagerProcess:
    def __init__(self, mongo: MongoServer, database: str, data_dir: Path, orphan_age_s: float = 3600) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "SEEDSERVE_MONGO_URI": mongo.uri, "SEEDSERVE_DATABASE": database,
               "SEEDSERVE_DATA_DIR": str(data_dir), "SEEDSERVE_ADMIN_TOKEN": "adm_orphans",
               "SEEDSERVE_ORPHAN_AGE_S": str(orphan_age_s)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "seedserve.manager_app:create_app_from_env",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            env=env, start_new_session=True,
        )
        eventually(lambda: httpx.get(self.url + "/livez", timeout=2).raise_for_status(), timeout_s=60)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)  # the manager and its probe child
        self.process.wait(10)


@pytest.fixture
def place(mongo_server: MongoServer, tmp_path: Path) -> Iterator[tuple[str, Path, pymongo.database.Database]]:
    database = f"orphans_{free_port()}"
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(mongo_server.uri)
    yield database, tmp_path / "data", client[database]
    client.close()


def test_a_manager_killed_mid_registration_leaves_no_upload_behind(
    mongo_server: MongoServer, place: tuple[str, Path, pymongo.database.Database], tmp_path: Path,
) -> None:
    database, data_dir, db = place
    first = ManagerProcess(mongo_server, database, data_dir)
    artifact = save_torchscript(make_mlp(), tmp_path / "m.pt")
    uploads = data_dir / "uploads"

    def register() -> None:
        try:
            with ManagerClient(first.url, "adm_orphans") as client:
                client.register_model(artifact, {**MLP_MANIFEST, "name": "killed"})
        except Exception:
            pass  # the manager is killed under it

    sending = threading.Thread(target=register)
    sending.start()
    # The artifact is on disk and being test-loaded: kill the manager now.
    eventually(lambda: next(uploads.glob("seedserve-upload-*")), timeout_s=60, interval_s=0.01)
    first.kill()
    sending.join(30)
    assert list(uploads.glob("seedserve-upload-*")), "the kill came too late to leave an upload behind"
    assert db["models"].find_one({"name": "killed"}) is None

    second = ManagerProcess(mongo_server, database, data_dir)
    try:
        assert list(uploads.glob("seedserve-upload-*")) == []
        bucket = gridfs.GridFSBucket(db, bucket_name="artifacts")
        assert [f for f in bucket.find({}) if f.filename == "killed"] == []  # nothing reached GridFS before the kill
        # and the restarted manager registers the same model
        with ManagerClient(second.url, "adm_orphans") as client:
            assert client.register(artifact, {**MLP_MANIFEST, "name": "killed"}).startswith("sk_")
    finally:
        second.kill()


def test_artifacts_no_version_refers_to_are_collected_once_old(
    mongo_server: MongoServer, place: tuple[str, Path, pymongo.database.Database], tmp_path: Path,
) -> None:
    database, data_dir, db = place
    first = ManagerProcess(mongo_server, database, data_dir)
    with ManagerClient(first.url, "adm_orphans") as client:
        client.register(save_torchscript(make_mlp(), tmp_path / "m.pt"), {**MLP_MANIFEST, "name": "kept"})
    first.kill()

    # The embedded server cannot backdate an upload, so the age limit is
    # shortened instead: one orphan is older than it, one younger.
    age_s = 15.0
    bucket = gridfs.GridFSBucket(db, bucket_name="artifacts")
    old_orphan = bucket.upload_from_stream("killed-before-its-version", b"x" * 1000)
    time.sleep(age_s + 3)
    young_orphan = bucket.upload_from_stream("registration-in-progress", b"y" * 1000)
    registered = db["versions"].find_one({"name": "kept"})["artifact"]["file_id"]
    assert {registered, old_orphan, young_orphan} <= {f._id for f in bucket.find({})}

    second = ManagerProcess(mongo_server, database, data_dir, orphan_age_s=age_s)
    try:
        left = {f._id for f in bucket.find({})}
        assert old_orphan not in left
        assert {registered, young_orphan} <= left
        with pytest.raises(gridfs.errors.NoFile):
            bucket.open_download_stream(old_orphan)
        # the kept model's artifact is whole
        assert bucket.open_download_stream(registered).read() == (tmp_path / "m.pt").read_bytes()
        with ManagerClient(second.url, "adm_orphans") as client:
            assert client.get_model("kept").version == 1
    finally:
        second.kill()
