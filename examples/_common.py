"""What every example does: register a model, wait until it serves, query it
over both transports, and check that they agree."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from seedserve.client import Client, ManagerClient
from seedserve.client.export import save_program
from seedserve.errors import NotFound, Unavailable


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--manager", default="http://127.0.0.1:8080")
    parser.add_argument("--master", default="http://127.0.0.1:8000")
    parser.add_argument("--token", help="admin token (default: read from <data dir>/admin-token)")
    parser.add_argument("--data-dir", type=Path, default=Path("seedserve-data"))
    parser.add_argument("--name", help="model name (default: a fresh one)")
    return parser.parse_args()


def register_and_query(
    model: torch.nn.Module | Path, manifest: dict[str, Any], inputs: dict[str, Any]
) -> dict[str, Any]:
    """``model``: a module (registered as a ``torch.export`` program) or an artifact file."""
    args = options()
    manifest = {**manifest, "name": args.name or f"{manifest['name']}-{int(time.time())}"}
    token = args.token or (args.data_dir / "admin-token").read_text().strip()
    with tempfile.TemporaryDirectory() as tmp:
        artifact = model if isinstance(model, Path) else save_program(model, manifest, Path(tmp) / "model.pt2")
        with ManagerClient(args.manager, token) as manager:
            key = manager.register(artifact, manifest)
    print(f"registered {manifest['name']}")
    with Client(args.master, key) as client:
        over_json = _first_answer(lambda: client.predict(manifest["name"], inputs, transport="json"))
        over_multipart = client.predict(manifest["name"], inputs, transport="multipart")
    _assert_close(over_json, over_multipart)
    print("outputs (JSON and multipart agree):", over_json)
    return over_json


def _assert_close(a: Any, b: Any) -> None:
    """Same structure, numbers equal to 1e-6 (the two transports decode to identical arrays)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), (a.keys(), b.keys())
        for key in a:
            _assert_close(a[key], b[key])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_close(x, y)
    elif isinstance(a, float):
        assert abs(a - b) <= 1e-6 + 1e-6 * abs(b), (a, b)
    else:
        assert a == b, (a, b)


def _first_answer(call: Any, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()  # type: ignore[no-any-return]
        except (NotFound, Unavailable):  # the model's deployment is starting
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
