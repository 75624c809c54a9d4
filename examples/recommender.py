"""A recommender: user and item embeddings plus a genre bag (EmbeddingBag) and
dense features -> a score per candidate item.

    .venv/bin/python examples/recommender.py   (with `seedserve up` running)
"""

from __future__ import annotations

import torch
from _common import register_and_query


class TwoTower(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.users = torch.nn.Embedding(1000, 8)
        self.items = torch.nn.Embedding(4, 8)
        self.genres = torch.nn.EmbeddingBag(3, 8, mode="mean")
        self.dense = torch.nn.Linear(2, 8)

    def forward(self, user: torch.Tensor, items: torch.Tensor, item_offsets: torch.Tensor,
                genre_values: torch.Tensor, genre_offsets: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        profile = self.users(user) + self.genres(genre_values, genre_offsets) + self.dense(dense)  # [N, 8]
        counts = torch.diff(torch.cat([item_offsets, torch.tensor([items.shape[0]])]))
        owner = torch.repeat_interleave(torch.arange(user.shape[0]), counts)
        return (self.items(items) * profile[owner]).sum(1)  # one score per candidate


manifest = {
    "name": "recommender",
    "inputs": [{
        "name": "request", "kind": "recommender",
        "users": {"hash_buckets": 1000},
        "items": {"vocabulary": ["dune", "alien", "heat"]},
        "sparse": [{"name": "genre", "vocabulary": ["scifi", "crime"]}],
        "dense_features": 2,
    }],
    "outputs": [{"name": "scores"}],
}
request = {"user": "alice", "items": ["dune", "heat", "alien"], "sparse": {"genre": ["scifi"]}, "dense": [0.3, 1.0]}

if __name__ == "__main__":
    out = register_and_query(TwoTower().eval(), manifest, {"request": request})
    assert len(out["scores"]) == 3
