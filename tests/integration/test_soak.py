"""The soak benchmark in its short mode (``benchmarks/soak.py`` runs it for ten
minutes): both benchmark models at half their measured maximum, on the
session's system, with no failed query and the same replicas throughout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks._model import MODELS, WORKLOADS
from benchmarks.soak import soak, wait_answering
from seedserve.client import ManagerClient
from tests.conftest import System

pytestmark = pytest.mark.integration


def test_half_the_maximum_for_20_s_over_two_models_fails_no_query(
    system: System, tmp_path: Path, registered: list[str]
) -> None:
    keys = {}
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        for name, workload in WORKLOADS.items():
            artifact = tmp_path / f"{name}.pt"
            torch.jit.script(MODELS[name]()).save(str(artifact))
            registered.append(workload.manifest["name"])
            keys[name] = manager.register(artifact, workload.manifest)
    wait_answering(system.master_url, keys)
    assert system.process is not None

    report = soak(system.master_url, keys, system.process.pid, seconds=20, maximum_s=5, sample_s=2)

    for name, result in report.soak.items():
        assert result.requests > 0, name
        assert result.errors == 0, f"{name}: {result.errors} of {result.requests} queries failed"
    assert len(report.samples) >= 5
    assert any("ServeReplica:model-bench-mlp" in name for name in report.samples[-1].rss)
    assert report.replicas_before == report.replicas_after

