"""Every example in examples/ runs green against a real `seedserve up`: one
model per input kind, registered, served, and queried through the SDK over
JSON and multipart (the example checks that both give the same outputs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from seedserve.client import ManagerClient
from tests.conftest import System

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parent.parent.parent / "examples"
KINDS = ["image_classifier", "audio_classifier", "tabular_regressor", "text_classifier", "graph_model", "recommender",
         "handler_mlp"]


@pytest.mark.parametrize("example", KINDS)
def test_example_runs_green_against_a_running_system(system: System, example: str) -> None:
    name = "ex-" + example.replace("_", "-")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{example}.py"), "--manager", system.manager_url, "--master",
         system.master_url, "--token", system.admin_token, "--name", name],
        capture_output=True, text=True, timeout=300,
    )
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "JSON and multipart agree" in result.stdout
    finally:
        with ManagerClient(system.manager_url, system.admin_token) as manager:
            if name in {m.name for m in manager.list_models()}:
                manager.delete_model(name)
