"""A replica's calls at once on its torch threads, measured for real in this
process (seedserve.runtime.items_per_second, as ModelServer's warm-up uses it)."""

from __future__ import annotations

import threading

import torch

from seedserve.codecs import Manifest, sample_inputs
from seedserve.runtime import items_per_second, torch_threads

MANIFEST = Manifest.model_validate({
    "name": "m", "inputs": [{"name": "x", "kind": "tensor", "dtype": "float32", "shape": [-1, 64]}],
    "outputs": [{"name": "y"}],
})


class Counting(torch.nn.Module):
    """A matmul that records which thread called it, and with how many torch threads."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(64, 64)
        self.seen: list[tuple[int, int]] = []
        self.lock = threading.Lock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.lock:
            self.seen.append((threading.get_ident(), torch.get_num_threads()))
        return self.linear(x)


def test_each_split_runs_its_calls_at_once_on_its_threads() -> None:
    before = torch_threads()
    try:
        for threads, flights in ((2, 1), (1, 2), (1, 3)):
            model = Counting()
            rate = items_per_second(model, MANIFEST, sample_inputs(MANIFEST, 8), 8, threads, flights, calls=3)
            assert rate > 0
            timed = model.seen[1:]  # after the untimed call
            assert len(timed) == flights * 3
            assert len({ident for ident, _ in timed}) == flights  # one thread of the process per call in flight
            assert {n for _, n in model.seen} == {threads}
            assert torch_threads() == threads  # the process keeps the split's threads
    finally:
        torch_threads(before)
