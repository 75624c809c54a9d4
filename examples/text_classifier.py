"""A text classifier: byte tokens -> mean embedding -> 2 classes, queried with strings.

    .venv/bin/python examples/text_classifier.py   (with `seedserve up` running)
"""

from __future__ import annotations

import torch
from _common import register_and_query


class BagOfBytes(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(257, 16, padding_idx=0)
        self.head = torch.nn.Linear(16, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # [N, 64] int64, 0 = padding
        mask = (tokens > 0).unsqueeze(-1).float()
        pooled = (self.embedding(tokens) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled)


manifest = {
    "name": "text-classifier",
    "inputs": [{"name": "review", "kind": "text", "tokenizer": "utf8_bytes", "max_tokens": 64, "max_length": 2000}],
    "outputs": [{"name": "logits"}],
}

if __name__ == "__main__":
    out = register_and_query(BagOfBytes().eval(), manifest, {"review": ["Wonderful film!", "Dull, too long."]})
    assert len(out["logits"]) == 2
