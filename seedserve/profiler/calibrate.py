"""Calibration: micro-benchmarks on the node they run on, fitted into the
latency model's parameters for its worker type.

Each op kind gets a fixed cost per op and an achieved rate: GEMMs, dense and
depthwise convolutions and recurrent layers in FLOP/s, memory-bound ops in
bytes/s (a copy sweep). Ops run inside TorchScript, as models do, with the
thread count replicas use.
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import torch
from pydantic import BaseModel

from seedserve.profiler.trace import CONV, DWCONV, GEMM, MEMORY, RNN, trace

__all__ = ["Calibration", "KindFit", "calibrate", "fit_kind"]


class KindFit(BaseModel):
    """t = overhead_s + max(flops / flops_per_s, bytes / bytes_per_s)."""

    overhead_s: float
    flops_per_s: float | None
    bytes_per_s: float


class Calibration(BaseModel):
    worker_type: str
    calibrated: bool
    host: str
    threads: int
    measured_at: datetime
    call_overhead_s: float
    view_overhead_s: float
    kinds: dict[str, KindFit]
    #: The sweep's points per kind: (flops, bytes, seconds), for inspection.
    points: dict[str, list[tuple[int, int, float]]] = {}


def _median_s(call: Callable[[], Any], repeats: int, budget_s: float = 0.3) -> float:
    call()
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-7)
    inner = max(1, min(200, int(budget_s / repeats / once)))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            call()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def _scripted(module: torch.nn.Module) -> torch.jit.ScriptModule:
    return torch.jit.script(module.eval())


class _Identity(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _Views(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(32):
            x = x.view(-1).unsqueeze(0).squeeze(0)
        return x


class _Clone(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


class _RNN(torch.nn.Module):
    def __init__(self, cell: type[torch.nn.Module], width: int, hidden: int) -> None:
        super().__init__()
        self.rnn = cell(width, hidden, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


def _point(module: torch.nn.Module, args: tuple[torch.Tensor, ...], kind: str, base_s: float,
           repeats: int) -> tuple[int, int, float] | None:
    """One sweep point: the kind's ops in one call, and the call's time less the call overhead."""
    scripted = _scripted(module)
    ops = [op for op in trace(lambda: scripted(*args)) if op.kind == kind]
    if not ops:
        return None
    with torch.inference_mode():
        seconds = _median_s(lambda: scripted(*args), repeats) - base_s
    return sum(op.flops for op in ops), sum(op.bytes for op in ops), max(seconds, 1e-8) / len(ops)


def _sweeps() -> dict[str, Iterable[tuple[torch.nn.Module, tuple[torch.Tensor, ...]]]]:
    gemm = ((torch.nn.Linear(k, n), (torch.randn(m, k),))
            for m in (1, 8, 64, 256) for k, n in ((64, 64), (256, 256), (1024, 1024), (512, 2048)))
    conv = ((torch.nn.Conv2d(c, c2, 3, padding=1), (torch.randn(b, c, hw, hw),))
            for b in (1, 8) for c, c2 in ((3, 16), (16, 32), (64, 64), (128, 128)) for hw in (8, 32, 64)
            if b * c * hw * hw <= 8 * 64 * 32 * 32)
    dwconv = ((torch.nn.Conv2d(c, c, 3, padding=1, groups=c), (torch.randn(b, c, hw, hw),))
              for b in (1, 8) for c in (16, 64, 256) for hw in (14, 56))
    rnn = ((_RNN(cell, w, h), (torch.randn(b, t, w),))
           for cell in (torch.nn.LSTM, torch.nn.GRU) for w, h in ((32, 64), (128, 256)) for b in (1, 8) for t in (8, 32))
    memory = ((_Clone(), (torch.randn(n),)) for n in (256, 4096, 65536, 2**20, 2**22))
    return {GEMM: gemm, CONV: conv, DWCONV: dwconv, RNN: rnn, MEMORY: memory}


def fit_kind(points: list[tuple[int, int, float]], bytes_per_s: float | None = None) -> KindFit:
    """The op cost model that best fits ``points`` in relative error: a grid
    over the rate, the overhead from the median residual at each rate."""
    if bytes_per_s is None:  # memory-bound ops: bytes alone
        best = None
        for rate in (10 ** (7 + i / 20) for i in range(100)):
            overhead = max(0.0, statistics.median(t - b / rate for _, b, t in points))
            error = statistics.mean(abs(math.log((overhead + b / rate) / t)) for _, b, t in points)
            if best is None or error < best[0]:
                best = (error, KindFit(overhead_s=overhead, flops_per_s=None, bytes_per_s=rate))
        assert best is not None
        return best[1]
    best = None
    for rate in (10 ** (8 + i / 20) for i in range(100)):
        floor = [max(f / rate, b / bytes_per_s) for f, b, _ in points]
        overhead = max(0.0, statistics.median(t - x for (_, _, t), x in zip(points, floor)))
        error = statistics.mean(abs(math.log((overhead + x) / t)) for (_, _, t), x in zip(points, floor))
        if best is None or error < best[0]:
            best = (error, KindFit(overhead_s=overhead, flops_per_s=rate, bytes_per_s=bytes_per_s))
    assert best is not None
    return best[1]


def calibrate(worker_type: str, repeats: int = 5) -> Calibration:
    """Run every sweep here and fit each kind. Takes tens of seconds."""
    with torch.inference_mode():
        identity, views = _scripted(_Identity()), _scripted(_Views())
        x = torch.zeros(1)
        call_s = _median_s(lambda: identity(x), repeats)
        view_s = max(0.0, (_median_s(lambda: views(x), repeats) - call_s) / (32 * 3))
    points: dict[str, list[tuple[int, int, float]]] = {}
    for kind, sweep in _sweeps().items():
        points[kind] = [p for module, args in sweep if (p := _point(module, args, kind, call_s, repeats))]
    memory = fit_kind(points[MEMORY])
    kinds = {MEMORY: memory}
    for kind in (GEMM, CONV, DWCONV, RNN):
        kinds[kind] = fit_kind(points[kind], memory.bytes_per_s)
    return Calibration(
        worker_type=worker_type, calibrated=True, host=platform.node(), threads=torch.get_num_threads(),
        measured_at=datetime.now(UTC), call_overhead_s=call_s, view_overhead_s=view_s, kinds=kinds, points=points,
    )

