"""Pure codecs: wire values to arrays, one module per input kind, and the
manifest schema with its validation. No I/O, no Ray, no web framework."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from seedserve.codecs.audio import AudioInput, decode_audio, sample_audio
from seedserve.codecs.graph import GraphInput, decode_graph, sample_graph
from seedserve.codecs.image import ImageInput, decode_image, sample_image
from seedserve.codecs.recommender import RecommenderInput, decode_recommender, sample_recommender
from seedserve.codecs.registry import Decoded, codec_for, kinds, register
from seedserve.codecs.schema import InputSpec, Manifest, OutputSpec
from seedserve.codecs.tabular import TabularInput, decode_tabular, sample_tabular
from seedserve.codecs.tensor import TensorInput, decode_tensor, sample_tensor
from seedserve.codecs.text import TextInput, decode_text, sample_text
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
    "codec_for",
    "kinds",
    "register",
]

register("tensor", decode_tensor, sample_tensor)
register("image", decode_image, sample_image)
register("audio", decode_audio, sample_audio)
register("tabular", decode_tabular, sample_tabular)
register("text", decode_text, sample_text)
register("graph", decode_graph, sample_graph)
register("recommender", decode_recommender, sample_recommender)


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
    return {spec.name: codec_for(spec.kind).decode(payload[spec.name], spec) for spec in manifest.inputs}


def sample_inputs(manifest: Manifest, batch_size: int = 1) -> dict[str, Decoded]:
    """What the model gets for a batch of neutral samples of every declared input."""
    return {spec.name: codec_for(spec.kind).sample(spec, batch_size) for spec in manifest.inputs}
