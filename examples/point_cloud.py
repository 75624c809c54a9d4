"""A point cloud model: per-point segmentation (a shared MLP over each point's
x, y, z, as PointNet starts), queried with 64 points of a noisy sphere.

    .venv/bin/python examples/point_cloud.py   (with `seedserve up` running)
"""

from __future__ import annotations

import numpy as np
import torch
from _common import register_and_query


class PerPoint(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mlp = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    def forward(self, points: torch.Tensor) -> torch.Tensor:  # [N, 3] -> [N, 2]: a score per point and class
        return self.mlp(points)


manifest = {
    "name": "point-cloud",
    "inputs": [{"name": "points", "kind": "point_cloud", "max_points": 10_000}],
    "outputs": [{"name": "scores", "labels": ["ground", "object"], "top_k": 1}],
}
rng = np.random.default_rng(0)
directions = rng.normal(size=(64, 3))
sphere = directions / np.linalg.norm(directions, axis=1, keepdims=True) + rng.normal(0, 0.02, (64, 3))

if __name__ == "__main__":
    torch.manual_seed(0)
    out = register_and_query(PerPoint().eval(), manifest, {"points": sphere.astype(np.float32)})
    assert len(out["scores"]) == 64
