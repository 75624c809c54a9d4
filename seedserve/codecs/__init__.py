"""Pure codecs: wire values to arrays, one module per input kind, and the
manifest schema with its validation. No I/O, no Ray, no web framework.

Importing this package reads the kinds (:mod:`seedserve.codecs.registry`),
not their decoding libraries: those load on a kind's first decode."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from seedserve.codecs.audio import AudioInput
from seedserve.codecs.graph import GraphInput
from seedserve.codecs.image import ImageInput
from seedserve.codecs.kind import Kind
from seedserve.codecs.recommender import RecommenderInput
from seedserve.codecs.registry import Decoded, codec_for, kind, kinds
from seedserve.codecs.schema import InputSpec, Manifest, OutputSpec
from seedserve.codecs.tabular import TabularInput
from seedserve.codecs.tensor import TensorInput
from seedserve.codecs.text import TextInput
from seedserve.errors import InputMismatch, InvalidInput, InvalidManifest

__all__ = [
    "Manifest",
    "InputSpec",
    "Decoded",
    "TensorInput",
    "ImageInput",
    "AudioInput",
    "TabularInput",
    "TextInput",
    "GraphInput",
    "RecommenderInput",
    "sample_inputs",
    "OutputSpec",
    "parse_manifest",
    "decode_inputs",
    "Kind",
    "codec_for",
    "kind",
    "kinds",
]


def parse_manifest(data: Any) -> Manifest:
    """Validate a manifest; the error names the first bad field and lists all of them."""
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": _field_path(err["loc"]), "message": err["msg"]} for err in exc.errors(include_url=False)
        ]
        first = problems[0]
        raise InvalidManifest(
            f"manifest field {first['field']!r}: {first['message']}",
            input=first["field"],
            problems=problems,
        ) from None


def _field_path(loc: tuple[int | str, ...]) -> str:
    """``inputs.0.image.size`` -> ``inputs.0.size``: the union's tag is not a field."""
    parts = list(loc)
    if len(parts) > 2 and parts[0] == "inputs" and parts[2] in kinds():
        del parts[2]
    return ".".join(str(p) for p in parts) or "(manifest)"


def decode_inputs(manifest: Manifest, payload: Any) -> dict[str, Decoded]:
    """Decode a query (input name -> wire value) with each input's codec."""
    if not isinstance(payload, dict):
        raise InvalidInput(
            f"the body must be a JSON object whose keys are input names {[i.name for i in manifest.inputs]}"
        )
    declared = {spec.name for spec in manifest.inputs}
    unknown = sorted(set(payload) - declared)
    if unknown:
        raise InputMismatch(
            f"unknown input {unknown[0]!r}; this model takes {sorted(declared)}", input=unknown[0]
        )
    missing = [spec.name for spec in manifest.inputs if spec.name not in payload]
    if missing:
        raise InputMismatch(f"missing input {missing[0]!r}; this model takes {sorted(declared)}", input=missing[0])
    return {spec.name: kind(spec.kind).decode(payload[spec.name], spec) for spec in manifest.inputs}


def sample_inputs(manifest: Manifest, batch_size: int = 1) -> dict[str, Decoded]:
    """What the model gets for a batch of neutral samples of every declared input."""
    return {spec.name: kind(spec.kind).sample(spec, batch_size) for spec in manifest.inputs}
