"""A handler package: the model as a script (load / preprocess / predict /
postprocess) plus a state dict, for models that are not TorchScript-able or
need Python around the network.

    .venv/bin/python examples/handler_mlp.py   # with `seedserve up` running
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

SCRIPT = '''
import numpy as np
import torch

def load(weights):
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    model.load_state_dict(weights)
    return model

def preprocess(inputs):
    x = inputs["x"]
    return torch.from_numpy((x - x.mean(axis=1, keepdims=True)).astype(np.float32))

def predict(model, x):
    return model(x)

def postprocess(scores):
    return {"y": scores, "best": scores.argmax(dim=1)}
'''

MANIFEST = {
    "name": "handler-mlp",
    "inputs": [{"name": "x", "shape": [-1, 16]}],
    "outputs": [{"name": "y"}, {"name": "best"}],
}


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import register_and_query

    from seedserve.client.handler import package_handler

    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "handler.py"
        script.write_text(SCRIPT)
        package = package_handler(script, Path(tmp) / "handler-mlp.zip", weights=network)
        x = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
        register_and_query(package, MANIFEST, {"x": x})


if __name__ == "__main__":
    main()
