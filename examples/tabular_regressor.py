"""A tabular regressor: four typed columns (one categorical) -> a price,
queried with a list of records.

    .venv/bin/python examples/tabular_regressor.py   (with `seedserve up` running)
"""

from __future__ import annotations

import torch
from _common import register_and_query

model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)).eval()
manifest = {
    "name": "tabular-regressor",
    "inputs": [{"name": "house", "kind": "tabular", "columns": [
        {"name": "rooms", "type": "int"},
        {"name": "area", "type": "float"},
        {"name": "garden", "type": "bool"},
        {"name": "city", "type": "category", "vocabulary": ["paris", "lyon", "nice"]},
    ]}],
    "outputs": [{"name": "price"}],
}
houses = [
    {"rooms": 3, "area": 72.5, "garden": False, "city": "lyon"},
    {"rooms": 5, "area": 140.0, "garden": True, "city": "nice"},
]

if __name__ == "__main__":
    out = register_and_query(model, manifest, {"house": houses})
    assert len(out["price"]) == 2
