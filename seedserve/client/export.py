"""Save a model as a ``torch.export`` program (.pt2), the artifact format to
register: ``save_program(model, manifest, "model.pt2")``.

It needs torch, which :mod:`seedserve.client` does not import; import it
from here. The example inputs come from the manifest, as the server builds
them, so the program takes what the server will hand it.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from seedserve.codecs import Manifest, sample_inputs
from seedserve.runtime import model_arguments

__all__ = ["dynamic_shapes", "export_program", "save_program"]

#: Batch sizes whose samples are compared to find the dimensions that vary
#: with the batch (rows, nodes, edges, candidate items); none is 0 or 1,
#: which torch.export would specialize.
_SIZES = (2, 3)


def _manifest(manifest: Manifest | Mapping[str, Any]) -> Manifest:
    return manifest if isinstance(manifest, Manifest) else Manifest.model_validate(dict(manifest))


def _arguments(manifest: Manifest, batch_size: int) -> tuple[Any, ...]:
    arguments = model_arguments(manifest, sample_inputs(manifest, batch_size))
    if any(not isinstance(argument, torch.Tensor) for argument in arguments):
        raise ValueError("an input reaches the model as strings (text without a tokenizer), which a torch.export "
                         "program cannot take; declare a tokenizer, or register a handler package")
    return tuple(arguments)


def dynamic_shapes(manifest: Manifest | Mapping[str, Any]) -> tuple[dict[int, Any], ...]:
    """For each positional argument the server passes, its dimensions that
    change with the batch, as ``Dim.AUTO`` (torch.export then finds how they
    relate, e.g. a recommender's users and offsets share one size)."""
    small, large = (_arguments(_manifest(manifest), n) for n in _SIZES)
    return tuple({dim: torch.export.Dim.AUTO for dim, (a, b) in enumerate(zip(x.shape, y.shape, strict=True)) if a != b}
                 for x, y in zip(small, large, strict=True))


def export_program(model: torch.nn.Module, manifest: Manifest | Mapping[str, Any]) -> torch.export.ExportedProgram:
    """``model`` exported with the manifest's sample inputs, every batch-sized dimension dynamic."""
    parsed = _manifest(manifest)
    return torch.export.export(model.eval(), _arguments(parsed, _SIZES[0]), dynamic_shapes=dynamic_shapes(parsed))


def save_program(model: torch.nn.Module, manifest: Manifest | Mapping[str, Any], path: str | PathLike[str]) -> Path:
    """Write ``model`` to ``path`` (use the ``.pt2`` suffix) as a torch.export
    program for ``manifest``; register it with ``ManagerClient.register(path, manifest)``."""
    out = Path(path)
    torch.export.save(export_program(model, manifest), str(out))
    return out
