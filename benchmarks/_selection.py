"""Which models a serving benchmark serves, and the one way every server
decodes their queries.

``select(model, manifest)`` gives them:

- ``builtin`` (the default): the MLP and the CNN of :mod:`benchmarks._model`;
- ``zoo:NAME``: one entry of :func:`benchmarks._zoo.zoo`. Its inputs are what
  the entry's ``make(1)`` builds: one float ``[1, 3, S, S]`` input is an image
  (a random SxS PNG, base64 JSON, decoded with Pillow to CHW float / 255),
  anything else a tensor sent as ``{"b64", "dtype", "shape"}`` with the
  values ``make(1)`` made. A dimension 0 that ``make(2)`` doubles from 1 is
  the batch dimension (shape ``[-1, ...]``); otherwise (graphs, embedding
  bags) the shape is fixed and nothing batches;
- ``PATH.pt`` with a manifest (JSON): a TorchScript file; its tensor and
  image inputs get random values (integers 0) of their sample shape.

Every manifest made here is a default one: inputs, outputs, one replica, no
batching block. The servers build their models with ``Served.make`` in their
own process (they import this module, never the harness), and decode with
:func:`arguments`: base64 -> Pillow -> float for images, nested lists or
base64 raw bytes for tensors, as a hand-written server does.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmarks._model import MODELS, WORKLOADS

__all__ = ["TUNED_BATCHING", "Served", "answer", "arguments", "batchable", "decode_image", "decode_tensor",
           "default_manifest", "infer", "select", "torchscript", "triton_batches", "zoo_manifest"]

#: The batching the serving benchmark's tuned seedserve row registers: what the CNN's manifest pins.
TUNED_BATCHING: dict[str, Any] = dict(WORKLOADS["cnn"].manifest["batching"])

#: One replica everywhere, so every server runs each model once.
ONE_REPLICA = {"min_replicas": 1, "max_replicas": 1, "num_cpus": 0.1}


@dataclass(frozen=True)
class Served:
    """One model as every server runs it."""

    key: str  #: short name: ``mlp``, ``cnn``, the zoo entry's or the file's
    title: str  #: what the table calls it
    manifest: dict[str, Any]
    make: Callable[[], Any]  #: builds the model (an eager module, or the loaded TorchScript)
    body: str  #: the native query (JSON)

    @property
    def path(self) -> str:
        return f"/models/{self.manifest['name']}/predict"


_TITLES = {"mlp": "tiny MLP (16->64->4), JSON row", "cnn": "small CNN (~83 MFLOPs), 3x64x64 PNG as base64 JSON"}


def default_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` without its batching block: what a user who tuned nothing registers."""
    return {key: value for key, value in manifest.items() if key != "batching"}


def select(model: str = "builtin", manifest: str | None = None) -> list[Served]:
    """The models ``--model`` names (see the module docstring); ValueError says what is wrong."""
    if model == "builtin":
        return [Served(name, _TITLES[name], default_manifest(WORKLOADS[name].manifest), MODELS[name],
                       WORKLOADS[name].body) for name in WORKLOADS]
    if model.startswith("zoo:"):
        return [_from_zoo(model.removeprefix("zoo:"))]
    if manifest is None:
        raise ValueError(f"--model {model}: a TorchScript file needs --manifest (its JSON manifest)")
    return [_from_file(Path(model), Path(manifest))]


def _from_zoo(name: str) -> Served:
    from benchmarks._zoo import zoo

    entries = {entry.name: entry for entry in zoo()}
    if name not in entries:
        raise ValueError(f"no zoo entry {name!r}; the entries are: {', '.join(entries)}")
    entry = entries[name]
    one, two = entry.make(1), entry.make(2)
    manifest = zoo_manifest(name, one, two)
    values: dict[str, Any] = {}
    for spec, tensor in zip(manifest["inputs"], one, strict=True):
        values[spec["name"]] = (_png(spec["size"]) if spec["kind"] == "image" else _tensor_value(tensor.numpy()))
    shapes = "; ".join(f"{s['name']} {s['kind']} {s.get('shape', s.get('size'))}" for s in manifest["inputs"])
    return Served(name, f"zoo {entry.family} {name} ({shapes})", manifest, lambda: entry.module,
                  json.dumps(values))


def zoo_manifest(name: str, one: Sequence[torch.Tensor], two: Sequence[torch.Tensor]) -> dict[str, Any]:
    """A default manifest for a zoo entry from its inputs at batch 1 (``one``) and 2 (``two``)."""
    inputs: list[dict[str, Any]] = []
    for i, (a, b) in enumerate(zip(one, two, strict=True)):
        input_name = "x" if len(one) == 1 else f"x{i}"
        batched = a.ndim > 0 and a.shape[0] == 1 and b.shape[0] == 2 and a.shape[1:] == b.shape[1:]
        if len(one) == 1 and batched and a.is_floating_point() and a.ndim == 4 and a.shape[1] == 3 \
                and a.shape[2] == a.shape[3]:
            inputs.append({"name": input_name, "kind": "image", "size": [a.shape[2], a.shape[3]]})
        else:
            shape = [-1, *a.shape[1:]] if batched else list(a.shape)
            inputs.append({"name": input_name, "kind": "tensor", "dtype": str(a.dtype).removeprefix("torch."),
                           "shape": shape})
    model_name = re.sub(r"[^a-z0-9-]+", "-", f"zoo-{name}".lower()).strip("-")[:63]
    return {"name": model_name, "inputs": inputs, "outputs": [{"name": "y"}], "scaling": ONE_REPLICA}


def _from_file(artifact: Path, manifest_path: Path) -> Served:
    manifest = json.loads(manifest_path.read_text())
    values: dict[str, Any] = {}
    for spec in manifest["inputs"]:
        kind = spec.get("kind", "tensor")
        if kind == "image":
            values[spec["name"]] = _png(spec.get("size", [224, 224]), spec.get("mode", "RGB"))
        elif kind == "tensor":
            dtype = np.dtype(spec.get("dtype", "float32"))
            shape = [1 if i == 0 and d == -1 else (8 if d == -1 else d) for i, d in enumerate(spec["shape"])]
            array = (np.random.default_rng(0).standard_normal(shape).astype(dtype) if dtype.kind == "f"
                     else np.zeros(shape, dtype))
            values[spec["name"]] = _tensor_value(array)
        else:
            raise ValueError(f"input {spec['name']!r} is of kind {kind!r}: the serving benchmark decodes tensor "
                             "and image inputs on every server; benchmark this model on seedserve alone")
    return Served(artifact.stem, f"{artifact.name} ({manifest['name']})", manifest,
                  lambda: torch.jit.load(str(artifact)).eval(), json.dumps(values))


def _png(size: Sequence[int], mode: str = "RGB") -> dict[str, str]:
    height, width = size
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="PNG")
    return {"b64": base64.b64encode(buffer.getvalue()).decode("ascii"), "mime": "image/png"}


def _tensor_value(array: np.ndarray) -> dict[str, Any]:
    return {"b64": base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii"),
            "dtype": array.dtype.name, "shape": list(array.shape)}


def decode_image(data: bytes, spec: dict[str, Any]) -> np.ndarray:
    """Image file bytes -> one item as the manifest's image spec declares it (no batch dimension)."""
    height, width = spec.get("size", [224, 224])
    with Image.open(io.BytesIO(data)) as image:
        converted = image.convert(spec.get("mode", "RGB"))
        if converted.size != (width, height):
            converted = converted.resize((width, height), Image.Resampling.BILINEAR)
        array = np.asarray(converted)
    if array.ndim == 2:
        array = array[:, :, None]
    if spec.get("dtype", "float32") == "float32":
        array = array.astype(np.float32) * np.float32(1 / 255)
        if spec.get("mean") is not None:
            array -= np.asarray(spec["mean"], np.float32)
        if spec.get("std") is not None:
            array /= np.asarray(spec["std"], np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1)) if spec.get("layout", "CHW") == "CHW" else array


def decode_tensor(value: Any, spec: dict[str, Any]) -> np.ndarray:
    """Nested lists or ``{"b64", "dtype", "shape"}`` -> an array of the declared dtype."""
    dtype = np.dtype(spec.get("dtype", "float32"))
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["b64"]), np.dtype(value["dtype"])).reshape(value["shape"])
    return np.asarray(value, dtype)


def arguments(manifest: dict[str, Any], body: dict[str, Any]) -> list[torch.Tensor]:
    """A native query's inputs as the model's positional arguments (an image gets its batch of 1)."""
    tensors = []
    for spec in manifest["inputs"]:
        if spec.get("kind", "tensor") == "image":
            array = decode_image(base64.b64decode(body[spec["name"]]["b64"]), spec)[None]
        else:
            array = decode_tensor(body[spec["name"]], spec)
        tensors.append(torch.from_numpy(array if array.flags.writeable else array.copy()))  # frombuffer's is not
    return tensors


def answer(manifest: dict[str, Any], result: Any) -> dict[str, Any]:
    """The model's output(s) as JSON: the declared output names -> nested lists."""
    results = result if isinstance(result, (tuple, list)) else (result,)
    return {spec["name"]: value.tolist() for spec, value in zip(manifest["outputs"], results, strict=False)}


def batchable(manifest: dict[str, Any]) -> bool:
    """Whether every input has a batch dimension (images always do), so a server may batch queries."""
    return all(spec.get("kind", "tensor") == "image" or spec["shape"][0] == -1 for spec in manifest["inputs"])


def infer(model: Callable[..., Any], manifest: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """What a hand-written server does with a query: decode, call the model, answer as JSON."""
    with torch.inference_mode():
        return answer(manifest, model(*arguments(manifest, body)))


def torchscript(served: Served, model: Any | None = None) -> torch.jit.ScriptModule:
    """``served``'s model (or ``model``, built from it) as TorchScript: scripted,
    else traced on the query's own inputs (zoo modules that scripting refuses)."""
    model = served.make() if model is None else model
    if isinstance(model, torch.jit.ScriptModule):
        return model
    scripted: torch.jit.ScriptModule
    try:
        scripted = torch.jit.script(model.eval())
    except Exception:  # whatever scripting refuses, tracing may take
        with torch.no_grad():
            scripted = torch.jit.trace(model.eval(), tuple(arguments(served.manifest, json.loads(served.body))))
    return scripted


def triton_batches(served: Served) -> bool:
    """Whether Triton's dynamic batcher can take ``served``: every input has a
    batch dimension and every output has a row per item (checked at batch 2)."""
    if not batchable(served.manifest):
        return False
    model, one = served.make(), arguments(served.manifest, json.loads(served.body))
    with torch.inference_mode():
        result = model(*[torch.cat([t, t]) for t in one])
    results = result if isinstance(result, (tuple, list)) else (result,)
    return all(r.ndim > 0 and r.shape[0] == 2 for r in results)
