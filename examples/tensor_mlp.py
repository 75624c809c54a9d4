"""Register a TorchScript MLP and query it with a tensor input.

Start seedserve first (`.venv/bin/seedserve up`), then:
    .venv/bin/python examples/tensor_mlp.py [--data-dir seedserve-data]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from seedserve.client import Client, ManagerClient
from seedserve.client.export import save_program
from seedserve.errors import NotFound, Unavailable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, default=Path("seedserve-data"))
    parser.add_argument("--manager", default="http://127.0.0.1:8080")
    parser.add_argument("--master", default="http://127.0.0.1:8000")
    args = parser.parse_args()

    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4)).eval()
    manifest = json.loads((Path(__file__).parent.parent / "configs" / "mlp.manifest.json").read_text())
    manifest["name"] = f"example-mlp-{int(time.time())}"
    with tempfile.TemporaryDirectory() as tmp:
        artifact = save_program(model, manifest, Path(tmp) / "mlp.pt2")  # a torch.export program
        token = (args.data_dir / "admin-token").read_text().strip()
        with ManagerClient(args.manager, token) as manager:
            key = manager.register(artifact, manifest)
    print(f"registered {manifest['name']}; its key (shown once): {key}")

    x = torch.randn(2, 16)
    with Client(args.master, key) as client:
        for _ in range(60):  # the model's deployment starts within seconds
            try:
                outputs = client.predict(manifest["name"], x=x)
                break
            except (NotFound, Unavailable):
                time.sleep(1)
        else:
            raise SystemExit("the model did not come up within 60 s; see `seedserve status`")
    print("served:   ", outputs["y"])
    print("in process:", model(x).tolist())


if __name__ == "__main__":
    main()
