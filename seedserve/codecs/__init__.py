"""Pure codecs: wire values to arrays, one module per input kind, and the
manifest schema with its validation. No I/O, no Ray, no web framework."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import ValidationError

from seedserve.codecs.registry import codec_for, kinds, register
from seedserve.codecs.schema import Manifest, OutputSpec, TensorInput
from seedserve.codecs.tensor import decode_tensor
from seedserve.errors import InvalidInput, InvalidManifest

__all__ = [
    "Manifest",
    "TensorInput",
    "OutputSpec",
    "parse_manifest",
    "decode_inputs",
    "codec_for",
    "kinds",
    "register",
]

register("tensor", decode_tensor)


def parse_manifest(data: Any) -> Manifest:
    """Validate a manifest; the error names the first bad field and lists all of them."""
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]) or "(manifest)", "message": err["msg"]}
            for err in exc.errors(include_url=False)
        ]
        first = problems[0]
        raise InvalidManifest(
            f"manifest field {first['field']!r}: {first['message']}",
            input=first["field"],
            problems=problems,
        ) from None


def decode_inputs(manifest: Manifest, payload: Any) -> dict[str, np.ndarray]:
    """Decode a query (input name -> wire value) with each input's codec."""
    if not isinstance(payload, dict):
        raise InvalidInput(
            f"the body must be a JSON object whose keys are input names {[i.name for i in manifest.inputs]}"
        )
    declared = {spec.name for spec in manifest.inputs}
    unknown = sorted(set(payload) - declared)
    if unknown:
        raise InvalidInput(
            f"unknown input {unknown[0]!r}; this model takes {sorted(declared)}", input=unknown[0]
        )
    missing = [spec.name for spec in manifest.inputs if spec.name not in payload]
    if missing:
        raise InvalidInput(f"missing input {missing[0]!r}; this model takes {sorted(declared)}", input=missing[0])
    return {spec.name: codec_for(spec.kind)(payload[spec.name], spec) for spec in manifest.inputs}
