"""A graph model: one round of neighbour averaging (a GCN layer) and a
per-graph readout, queried with two graphs (one from networkx if installed).

    .venv/bin/python examples/graph_model.py   (with `seedserve up` running)
"""

from __future__ import annotations

from typing import Any

import torch
from _common import register_and_query


class TinyGCN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 8)
        self.readout = torch.nn.Linear(8, 1)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        messages = torch.zeros_like(x).index_add_(0, edge_index[1], x[edge_index[0]])
        degree = torch.zeros(x.shape[0]).index_add_(0, edge_index[1], torch.ones(edge_index.shape[1]))
        h = torch.relu(self.layer((x + messages) / (1 + degree).unsqueeze(1)))
        graphs = batch.max().item() + 1  # a symbolic size in torch.export, not a Python int
        pooled = torch.zeros(graphs, h.shape[1]).index_add_(0, batch, h)
        return self.readout(pooled).squeeze(1)


manifest = {
    "name": "graph-model",
    "inputs": [{"name": "molecule", "kind": "graph", "node_features": 3}],
    "outputs": [{"name": "score"}],
}
triangle: Any = {"x": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "edge_index": [[0, 1, 2], [1, 2, 0]]}
try:
    import networkx as nx

    path = nx.path_graph(4)
    for node in path.nodes:
        path.nodes[node]["x"] = [float(node), 1.0, 0.0]
    second: Any = path
except ImportError:
    second = {"x": [[0, 1, 0], [1, 1, 0]], "edge_index": [[0, 1], [1, 0]]}

if __name__ == "__main__":
    out = register_and_query(TinyGCN().eval(), manifest, {"molecule": [triangle, second]})
    assert len(out["score"]) == 2
