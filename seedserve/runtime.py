"""Running a registered model: load its artifact, build sample inputs, call it,
and name its outputs.

Shared by the manager (which test-loads every artifact in a child process
before storing it) and the model servers (which load it in their replicas),
so both agree on what "the model runs" means.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from seedserve.codecs import Decoded, Manifest, sample_inputs
from seedserve.errors import InvalidArtifact, ModelError

__all__ = ["ARTIFACT_FORMATS", "load_model", "model_arguments", "sample_inputs", "run_model"]

#: Artifact formats the registry accepts so far.
ARTIFACT_FORMATS = ("torchscript",)

_TORCH_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}


def load_model(data: bytes, fmt: str) -> torch.jit.ScriptModule:
    """Load an artifact's bytes. TorchScript archives hold no pickled Python
    objects, so loading one runs no code from the upload."""
    if fmt != "torchscript":
        raise InvalidArtifact(f"artifact format {fmt!r} is not supported; use one of {ARTIFACT_FORMATS}", input="format")
    try:
        model = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError or a zip error for non-TorchScript files
        raise InvalidArtifact(
            "the artifact is not a TorchScript archive; export it with torch.jit.script(model).save(path) "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})",
            input="artifact",
        ) from exc
    model.eval()
    return model


def model_arguments(manifest: Manifest, decoded: Mapping[str, Decoded]) -> list[Any]:
    """Positional arguments in declared order: an array becomes a tensor,
    named arrays (graph, recommender) become several tensors in their order,
    and strings (text without a tokenizer) a ``List[str]``."""
    arguments: list[Any] = []
    for spec in manifest.inputs:
        value = decoded[spec.name]
        parts = list(value.values()) if isinstance(value, dict) else [value]
        for part in parts:
            if part.dtype == object:
                arguments.append([str(item) for item in part.tolist()])
            else:
                arguments.append(torch.from_numpy(np.ascontiguousarray(part)))
    return arguments


def run_model(model: torch.nn.Module, manifest: Manifest, arrays: Mapping[str, Decoded]) -> dict[str, Any]:
    """Call ``model`` with the inputs in declared order; name its outputs.

    Returns arrays keyed by the declared output names. A count mismatch
    between what the model returns and what the manifest declares raises
    :class:`InvalidArtifact`.
    """
    try:
        with torch.inference_mode():
            result = model(*model_arguments(manifest, arrays))
    except Exception as exc:  # the model's own failure, reported as JSON with its message
        first_line = str(exc).strip().splitlines()[-1][:500] if str(exc).strip() else ""
        raise ModelError(f"the model failed on these inputs: {type(exc).__name__}: {first_line}") from exc
    outputs = _as_sequence(result)
    names = [spec.name for spec in manifest.outputs]
    for spec, value in zip(manifest.outputs, outputs):
        width = value.shape[-1] if isinstance(value, torch.Tensor) and value.ndim else None
        if spec.labels is not None and width != len(spec.labels):
            raise InvalidArtifact(
                f"output {spec.name!r} has {width} scores per row but the manifest declares {len(spec.labels)} labels",
                input="outputs",
            )
    if len(outputs) != len(names):
        raise InvalidArtifact(
            f"the model returned {len(outputs)} output(s) but the manifest declares {len(names)}: {names}",
            input="outputs",
        )
    return {name: _to_numpy(value, name) for name, value in zip(names, outputs)}


def _as_sequence(result: Any) -> Sequence[Any]:
    if isinstance(result, (tuple, list)):
        return list(result)
    if isinstance(result, dict):
        return list(result.values())
    return [result]


def _to_numpy(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, (int, float, bool)):
        return np.asarray(value)
    raise InvalidArtifact(f"output {name!r} is a {type(value).__name__}, not a tensor", input="outputs")
