"""The model every serving benchmark runs: the 16 -> 64 -> 4 MLP, JSON in and out."""

from __future__ import annotations

import torch

BODY = '{"x": [[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0,1.1,1.2,1.3,1.4,1.5,1.6]]}'
MANIFEST = {
    "name": "bench-mlp",
    "inputs": [{"name": "x", "kind": "tensor", "dtype": "float32", "shape": [-1, 16]}],
    "outputs": [{"name": "y"}],
    # One replica everywhere, so every server runs the model once.
    "scaling": {"min_replicas": 1, "max_replicas": 1, "num_cpus": 0.1},
}


def make_mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4)).eval()


def infer(model: torch.nn.Module, body: dict[str, list[list[float]]]) -> dict[str, list[list[float]]]:
    with torch.inference_mode():
        return {"y": model(torch.tensor(body["x"], dtype=torch.float32)).tolist()}
