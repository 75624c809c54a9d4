"""Build a handler package: a model as a Python script plus its weights."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

import torch

from seedserve.runtime import HANDLER_SCRIPT, HANDLER_WEIGHTS

__all__ = ["package_handler"]


def package_handler(
    script: str | PathLike[str],
    out: str | PathLike[str],
    weights: Mapping[str, torch.Tensor] | torch.nn.Module | None = None,
) -> Path:
    """Write ``out`` (a zip) from ``script`` (defines ``load(weights)`` and
    ``predict(model, inputs)``, optionally ``preprocess`` and ``postprocess``)
    and ``weights`` (a state dict, or a module whose state dict is taken).
    Register it with ``ManagerClient.register(out, manifest)``."""
    state = weights.state_dict() if isinstance(weights, torch.nn.Module) else weights
    path = Path(out)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as package:
        package.write(Path(script), HANDLER_SCRIPT)
        if state is not None:
            buffer = io.BytesIO()
            torch.save(dict(state), buffer)
            package.writestr(HANDLER_WEIGHTS, buffer.getvalue())
    return path
