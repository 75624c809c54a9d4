"""Stopping `seedserve up` and starting it again on the same data directory
serves every registered model again, with the same keys, without re-registering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seedserve.client import Client, ManagerClient
from tests.conftest import System
from tests.helpers import MLP_MANIFEST, eventually, make_mlp, save_torchscript

pytestmark = pytest.mark.integration


def test_restart_serves_registered_models_again(system: System, tmp_path: Path) -> None:
    model = make_mlp(seed=7)
    artifact = save_torchscript(model, tmp_path / "durable.pt")
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        key = manager.register(artifact, {**MLP_MANIFEST, "name": "durable"})
    x = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    with Client(system.master_url, key) as client:
        before = eventually(lambda: client.predict("durable", x=x), timeout_s=90)

    system.restart()

    with Client(system.master_url, key) as client:
        after = eventually(lambda: client.predict("durable", x=x), timeout_s=120)
    # The same model; the replica may or may not keep the graph it optimized
    # at warm-up (kept only if no slower), which moves the last float bits.
    np.testing.assert_allclose(after["y"], before["y"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(after["y"], model(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        assert manager.get_model("durable").version == 1
