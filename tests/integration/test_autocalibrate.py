"""Calibration without being asked (seedserve.deployments._autocalibrate),
through the real Ray cluster of a running `seedserve up`: a worker type no
calibration covers is calibrated once, on its node, and stored with its host
and torch version; the next round reuses it; a change of torch version
calibrates again. The sweep is the quick one (every fourth point), into a
database of its own so that the shared system's predictions do not move."""

from __future__ import annotations

import json
import subprocess
import sys

import pymongo
import pytest
import torch

from seedserve.profiler.calibrate import Calibration
from tests.conftest import System

pytestmark = pytest.mark.integration

DATABASE = "autocalibrate-test"

#: One round of the master's background calibration, as a driver of the
#: system's Ray cluster. ``quiet_load`` is infinite: CI is never quiet, and
#: the wait for quiet is checked on its own below.
_ROUND = f"""
import asyncio, json, os
from seedserve.deployments.serve_api import ray_auth_headers
if ray_auth_headers():
    os.environ.setdefault("RAY_AUTH_MODE", "token")
import ray
from seedserve.deployments._autocalibrate import calibrate_new_types
from seedserve.registry import ModelStore, connect
from seedserve.settings import Settings

settings = Settings()
ray.init(address=f"127.0.0.1:{{settings.ray_port}}", log_to_driver=False, logging_level="ERROR")

async def main():
    client = connect(settings.resolved_mongo_uri)
    try:
        return await calibrate_new_types(ModelStore(client[{DATABASE!r}]), repeats=1, quick=True,
                                         quiet_load=float("inf"))
    finally:
        await client.close()

print(json.dumps(asyncio.run(main())))
"""


def _round(system: System) -> list[str]:
    run = subprocess.run([sys.executable, "-c", _ROUND], env=system.env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    calibrated: list[str] = json.loads(run.stdout.strip().splitlines()[-1])
    return calibrated


def test_a_new_worker_type_is_calibrated_once_and_again_only_for_another_torch(system: System) -> None:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(system.mongo_uri)
    calibrations = client[DATABASE]["calibrations"]
    try:
        calibrations.delete_many({})
        assert _round(system) == ["cpu-local"]  # the head's type, never calibrated here
        stored = calibrations.find_one({"_id": "cpu-local"})
        assert stored is not None
        calibration = Calibration.model_validate(stored)
        assert calibration.calibrated and calibration.torch_version == torch.__version__
        assert calibration.threads == 1 and calibration.points["gemm"]
        assert _round(system) == []  # reused
        assert calibrations.find_one({"_id": "cpu-local"}) == stored
        calibrations.update_one({"_id": "cpu-local"}, {"$set": {"torch_version": "2.0.0"}})
        assert _round(system) == ["cpu-local"]
        again = Calibration.model_validate(calibrations.find_one({"_id": "cpu-local"}))
        assert again.torch_version == torch.__version__ and again.measured_at > calibration.measured_at
    finally:
        client.drop_database(DATABASE)
        client.close()


def test_a_busy_node_is_not_calibrated() -> None:
    """The sweep waits for quiet and gives up (None, tried again later)
    rather than measure the load: here no load is quiet enough."""
    from seedserve.deployments._autocalibrate import calibrate_node

    assert calibrate_node("cpu-local", 1, 1, quiet_wait_s=0.0, quiet_load=0.0) is None


def test_what_asks_for_a_calibration_and_who_runs_it() -> None:
    from seedserve.deployments._autocalibrate import needs_calibration
    from seedserve.deployments.serve_config import master_application
    from seedserve.settings import Settings

    version = torch.__version__
    assert needs_calibration(None, version) and needs_calibration({"calibrated": False}, version)
    assert needs_calibration({"calibrated": True, "torch_version": "2.0.0"}, version)
    assert not needs_calibration({"calibrated": True, "torch_version": version}, version)
    assert Settings.model_fields["auto_calibrate"].default is True  # on unless turned off (tests turn it off)
    master = master_application(mongo_uri=None, database="d", dashboard_url="http://x", reconcile_interval_s=1,
                                auto_calibrate=True)
    assert master["args"]["auto_calibrate"] is True
