"""The models every serving benchmark runs, with the body each query sends:

- ``mlp``: the 16 -> 64 -> 4 MLP, a JSON row of 16 floats;
- ``cnn``: a small CNN (41 M multiply-adds, about 83 MFLOPs) on a 3x64x64
  PNG sent as base64 JSON, decoded with Pillow by every server.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class Workload:
    name: str
    body: str
    manifest: dict[str, Any]

    @property
    def path(self) -> str:
        return f"/models/{self.manifest['name']}/predict"


def make_mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4)).eval()


def make_cnn() -> torch.nn.Module:
    """Convolutions at 64, 32 and 16 pixels: 3.5 M + 18.9 M + 18.9 M multiply-adds."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(64, 128, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(128, 10),
    ).eval()


def _png() -> str:
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# One replica everywhere, so every server runs each model once.
_ONE_REPLICA = {"min_replicas": 1, "max_replicas": 1, "num_cpus": 0.1}

MLP = Workload(
    "mlp",
    '{"x": [[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0,1.1,1.2,1.3,1.4,1.5,1.6]]}',
    {"name": "bench-mlp", "inputs": [{"name": "x", "kind": "tensor", "dtype": "float32", "shape": [-1, 16]}],
     "outputs": [{"name": "y"}], "scaling": _ONE_REPLICA},
)
CNN = Workload(
    "cnn",
    json.dumps({"image": {"b64": _png(), "mime": "image/png"}}),
    {"name": "bench-cnn", "inputs": [{"name": "image", "kind": "image", "size": [64, 64]}],
     "outputs": [{"name": "y"}], "scaling": _ONE_REPLICA,
     # A 5 ms call against ~1 ms to decode a query: let batches wait a little to fill. What
     # benchmarks.serving's tuned seedserve row registers; its default rows drop this block.
     "batching": {"max_batch_size": 16, "max_wait_ms": 5}},
)
WORKLOADS = {w.name: w for w in (MLP, CNN)}
MODELS = {"mlp": make_mlp, "cnn": make_cnn}


def infer_mlp(model: torch.nn.Module, body: dict[str, Any]) -> dict[str, Any]:
    with torch.inference_mode():
        return {"y": model(torch.tensor(body["x"], dtype=torch.float32)).tolist()}


def infer_cnn(model: torch.nn.Module, body: dict[str, Any]) -> dict[str, Any]:
    """What a hand-written server does: base64 -> Pillow -> CHW float -> model."""
    with Image.open(io.BytesIO(base64.b64decode(body["image"]["b64"]))) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    with torch.inference_mode():
        return {"y": model(torch.from_numpy(pixels.transpose(2, 0, 1)).unsqueeze(0)).tolist()}


INFER = {"mlp": infer_mlp, "cnn": infer_cnn}
