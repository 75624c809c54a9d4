"""Helpers shared by the test suites: free ports, small models, waiting."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import torch

T = TypeVar("T")

MLP_MANIFEST = {
    "name": "mlp",
    "inputs": [{"name": "x", "kind": "tensor", "dtype": "float32", "shape": [-1, 16]}],
    "outputs": [{"name": "y"}],
}


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: all bound at once, so none is handed out twice."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def make_mlp(seed: int = 0) -> torch.nn.Module:
    """The 16 -> 64 -> 4 MLP used across tests and benchmarks."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4)).eval()


def save_torchscript(model: torch.nn.Module, path: Path) -> Path:
    torch.jit.script(model).save(str(path))
    return path


def eventually(check: Callable[[], T], timeout_s: float = 60.0, interval_s: float = 0.5) -> T:
    """Call ``check`` until it returns without raising; re-raise the last error at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(interval_s)


class Load(threading.Thread):
    """Queries one model back to back from a thread; keeps (time, answered 200)."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.results: list[tuple[float, bool]] = []
        self.done = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5, headers={"Authorization": f"Bearer {self.key}"}) as http:
            while not self.done.is_set():
                try:
                    ok = http.post(self.url, json={"x": [[0.5] * 16]}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.results.append((time.monotonic(), ok))
                if not ok:
                    time.sleep(0.05)

    def successes_after(self, moment: float) -> int:
        return sum(ok for t, ok in self.results if t > moment)


def error_fields(response: httpx.Response) -> dict[str, Any]:
    """An error answer's ``code``, ``message`` and ``input``, from seedserve's
    native body (``{"error": {...}}``) or the Open Inference Protocol's on /v2
    (``{"error": "<message>", "code", "input"}``); {} for any other body."""
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return {**body, "message": error}
    return error if isinstance(error, dict) else {}
