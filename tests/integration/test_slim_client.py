"""The client-only install: the base distribution's wheel in a fresh, plain
virtual environment with only its declared dependencies (no torch, no Ray)
queries a model on the running stack."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from seedserve.client import ManagerClient
from seedserve.errors import NotFound
from tests.conftest import System

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NAME = "slim-client"
MANIFEST = {
    "name": NAME,
    "inputs": [{"name": "x", "kind": "tensor", "dtype": "float32", "shape": [-1, 4]}],
    "outputs": [{"name": "y"}],
}
CLIENT_DEPENDENCIES = {"httpx", "numpy", "pillow", "pydantic"}

SCRIPT = """
import importlib.util, json, sys
import numpy as np
import seedserve, seedserve.client
from seedserve.client import Client

url, key, name = sys.argv[1:4]
with Client(url, key, retries=10) as client:
    client.wait_until_ready(name, timeout=90)
    native = client.predict(name, x=[[1.0, 2.0, 3.0, 4.0]])
    oip = client.infer(name, x=np.array([[0.5, 0.0, -1.0, 2.0]], dtype=np.float32))
print(json.dumps({
    "seedserve": seedserve.__file__,
    "importable": sorted(m for m in ("torch", "ray", "librosa", "starlette") if importlib.util.find_spec(m)),
    "imported": sorted({"torch", "ray"} & {m.split(".")[0] for m in sys.modules}),
    "native": native["y"],
    "oip": oip["y"].tolist(),
}))
"""


class Affine(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 + 1


def _run(*command: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _requirements(wheel: Path) -> list[str]:
    """The wheel's unconditional ``Requires-Dist`` (extras excluded)."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines
            if line.startswith("Requires-Dist:") and "extra ==" not in line]


@pytest.fixture(scope="session")
def slim_python(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A plain venv (not --system-site-packages) holding the client wheel and its declared dependencies."""
    root = tmp_path_factory.mktemp("slim-client")
    # Built from a copy: an in-tree build would write build/ and *.egg-info into the checkout.
    source = root / "source"
    shutil.copytree(ROOT / "seedserve", source / "seedserve", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", root / "dist", source)
    wheel = next((root / "dist").glob("seedserve-*.whl"))
    requirements = _requirements(wheel)
    _run(sys.executable, "-m", "venv", root / "venv")
    python = root / "venv" / "bin" / "python"
    _run(python, "-m", "pip", "install", "-q", "--no-deps", wheel)
    _run(python, "-m", "pip", "install", "-q", *requirements)
    return python, requirements


@pytest.fixture(scope="module")
def key(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    artifact = tmp_path_factory.mktemp("slim-model") / "affine.pt"
    torch.jit.script(Affine()).save(str(artifact))
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        secret: str = manager.register(artifact, MANIFEST)
        try:
            yield secret
        finally:  # replicas reserve CPU on the 2-CPU node
            with contextlib.suppress(NotFound):
                manager.delete_model(NAME)


def test_the_client_distribution_requires_only_httpx_numpy_pillow_and_pydantic(
    slim_python: tuple[Path, list[str]],
) -> None:
    python, requirements = slim_python
    names = {r.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower() for r in requirements}
    assert names == CLIENT_DEPENDENCIES
    installed = json.loads(_run(python, "-m", "pip", "list", "--format=json"))
    assert not {p["name"].lower() for p in installed} & {"torch", "ray", "librosa", "starlette", "pymongo"}


def test_a_venv_without_torch_and_ray_queries_the_running_stack(
    system: System, key: str, slim_python: tuple[Path, list[str]], tmp_path: Path
) -> None:
    python, _ = slim_python
    script = tmp_path / "query.py"
    script.write_text(SCRIPT)
    # Nothing of this checkout or this venv may leak in: the installed wheel is what runs.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    out = json.loads(_run(python, script, system.master_url, key, NAME, env=env).strip().splitlines()[-1])
    assert out["seedserve"].startswith(str(python.parent.parent))
    assert out["importable"] == [] and out["imported"] == []
    assert out["native"] == [[3.0, 5.0, 7.0, 9.0]]
    assert out["oip"] == [[2.0, 1.0, -1.0, 5.0]]


def test_the_command_line_of_a_client_only_install_names_the_server_install(
    slim_python: tuple[Path, list[str]],
) -> None:
    python, _ = slim_python
    done = subprocess.run([str(python.parent / "seedserve"), "status"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "pip install 'seedserve[server]'" in done.stderr and "Traceback" not in done.stderr
