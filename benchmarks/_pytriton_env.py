"""PyTriton's own virtual environment, made on demand, never the project's:
nvidia-pytriton brings Triton Inference Server (a C++ binary) and pins its
own numpy, so it is kept apart from ``.venv``.

The venv lives in ``$SEEDSERVE_BENCH_CACHE/pytriton-venv`` (default
``~/.cache/seedserve-bench``), is made with the interpreter that made the
running venv (``sys._base_executable``), and gets, in two pip calls:
torch at this venv's version as the CPU build (``torch==X+cpu``, pinned
again as a constraint for the second call, so pip can never pull a CUDA
build), then ``nvidia-pytriton``, numpy and pillow. A marker file records
the pins; a venv without it (a failed install) is completed again.

Triton's Python-backend stub links ``libpython3.X.so``: :func:`server_env`
puts that interpreter's ``LIBDIR`` on ``LD_LIBRARY_PATH``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from importlib.metadata import version
from pathlib import Path

__all__ = ["PyTritonUnavailable", "pytriton_python", "server_env"]

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["nvidia-pytriton", "numpy", "pillow"]


class PyTritonUnavailable(RuntimeError):
    """The PyTriton venv could not be made here; the message says why."""


def venv_dir() -> Path:
    cache = os.environ.get("SEEDSERVE_BENCH_CACHE") or str(Path.home() / ".cache" / "seedserve-bench")
    return Path(cache) / "pytriton-venv"


def torch_pin() -> str:
    """This venv's torch release, as the CPU build."""
    return f"torch=={version('torch').split('+')[0]}+cpu"


def pytriton_python() -> Path:
    """The PyTriton venv's interpreter, made or completed first if need be."""
    venv = venv_dir()
    python, marker = venv / "bin" / "python", venv / ".seedserve-complete"
    pins = "\n".join([torch_pin(), *PACKAGES]) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == pins:
        return python
    base = getattr(sys, "_base_executable", sys.executable)
    print(f"   making the PyTriton venv in {venv} with {base} (a minute or two, once)", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    constraints = venv.parent / "pytriton-constraints.txt"
    constraints.write_text(torch_pin() + "\n")
    _step([base, "-m", "venv", str(venv)], "python -m venv")
    _step([str(python), "-m", "pip", "install", "-q", torch_pin()], f"pip install {torch_pin()}")
    _step([str(python), "-m", "pip", "install", "-q", "-c", str(constraints), *PACKAGES],
          f"pip install {' '.join(PACKAGES)}")
    marker.write_text(pins)
    return python


def _step(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PyTritonUnavailable(f"{what} failed: {exc}") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise PyTritonUnavailable(f"{what} exited {done.returncode}:\n{tail}")


def server_env() -> dict[str, str]:
    """The environment for ``benchmarks.pytriton_server``: libpython for Triton's
    stub, and this checkout on the path (the server imports benchmarks._selection)."""
    libdir = str(sysconfig.get_config_var("LIBDIR"))
    library_path = os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p)
    return {**os.environ, "LD_LIBRARY_PATH": library_path, "PYTHONPATH": str(ROOT)}
