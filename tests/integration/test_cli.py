"""The `seedserve` command against a real running system."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import System

pytestmark = pytest.mark.integration

SEEDSERVE = str(Path(sys.executable).parent / "seedserve")


def test_status_reports_each_component_of_a_running_system(system: System) -> None:
    env = {**system.env}
    result = subprocess.run([SEEDSERVE, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "master   up" in result.stdout and "manager  up" in result.stdout
    assert "database" in result.stdout


def test_a_second_up_on_a_busy_port_fails_naming_the_port(system: System, tmp_path: Path) -> None:
    env = {**system.env, "SEEDSERVE_DATA_DIR": str(tmp_path)}
    result = subprocess.run([SEEDSERVE, "up"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"master port {system.env['SEEDSERVE_MASTER_PORT']}" in result.stderr
    assert "already in use" in result.stderr


def test_status_exits_1_when_nothing_runs(tmp_path: Path) -> None:
    from tests.helpers import free_port

    result = subprocess.run(
        [SEEDSERVE, "status", "--master-port", str(free_port()), "--manager-port", str(free_port())],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "DOWN" in result.stdout
