"""Calibration: micro-benchmarks on the node they run on, fitted into the
latency model's parameters for its worker type.

Each op kind gets a fixed cost per op and an achieved rate: GEMMs, dense and
depthwise convolutions and recurrent layers in FLOP/s, memory-bound ops in
bytes/s (a copy sweep). Ops run inside TorchScript, as models do, with the
thread count replicas use.
"""

from __future__ import annotations

import functools
import itertools
import math
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import torch
from pydantic import BaseModel

from seedserve.profiler.trace import CONV, DWCONV, GATHER, GEMM, MEMORY, RNN, trace

__all__ = ["median_s", "Calibration", "KindFit", "SweepPoint", "calibrate", "fit_kind"]


class SweepPoint(NamedTuple):
    """One point of a calibration sweep: the kind's ops in one call, per op."""

    flops: int
    bytes: int
    seconds: float
    #: The main op's name and its reduction length (for gathers: rows moved).
    name: str = ""
    reduction: int = 0


class KindFit(BaseModel):
    """t = overhead_s + max(flops / flops_per_s, bytes / bytes_per_s)."""

    overhead_s: float
    flops_per_s: float | None
    bytes_per_s: float


class Calibration(BaseModel):
    """The latency model of one worker type (see seedserve.profiler.predict)."""

    worker_type: str
    calibrated: bool
    host: str
    threads: int
    measured_at: datetime
    #: torch's version where it was measured: another version is recalibrated (seedserve.deployments._autocalibrate).
    torch_version: str = ""
    call_overhead_s: float
    view_overhead_s: float
    kinds: dict[str, KindFit]
    #: The sweeps' points per kind: (flops, bytes, seconds per op, op name,
    #: reduction length or, for gathers, rows moved). The predictor looks each op up among them.
    points: dict[str, list[SweepPoint]] = {}
    #: (weight bytes, seconds): chains of distinct Linear layers at batch 1,
    #: less the call overhead. A model's weights are read once per call; past
    #: the caches they stream from memory, which the single-op sweeps (their
    #: weights hot in cache) do not see.
    streaming: list[tuple[int, float]] = []
    #: Corrections fitted on live traffic of ``live_models`` models on this
    #: worker type (seedserve.profiler.feedback): a constant added to the fixed
    #: cost of every call, and a scale on the compute and memory terms.
    live_fixed_s: float = 0.0
    live_scale: float = 1.0
    live_models: int = 0


def _synced(call: Callable[[], Any], device: str) -> Callable[[], Any]:
    """``call`` that returns once a CUDA device has finished it (kernels run asynchronously)."""
    if not device.startswith("cuda"):
        return call

    def synced() -> None:
        call()
        torch.cuda.synchronize(device)

    return synced


def median_s(call: Callable[[], Any], repeats: int, budget_s: float = 0.3, device: str = "cpu") -> float:
    """The median seconds of ``call`` over ``repeats`` timings, each of as many calls as ``budget_s`` allows."""
    call = _synced(call, device)
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
        output: torch.Tensor = self.rnn(x)[0]
        return output


class _Chain(torch.nn.Module):
    def __init__(self, width: int, layers: int) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(width, width) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def _streaming(call_s: float, repeats: int, device: str = "cpu") -> list[tuple[int, float]]:
    """Time per call of weight chains from 256 KiB to 64 MiB: hot in cache at
    the small end, streamed from memory at the large end."""
    points = []
    for width, layers in ((256, 1), (256, 2), (256, 4), (256, 8), (512, 1), (512, 2), (512, 4), (512, 8),
                          (512, 16), (1024, 8), (1024, 16)):
        chain, x = _scripted(_Chain(width, layers).to(device)), torch.randn(1, width, device=device)
        seconds = median_s(functools.partial(chain, x), repeats, budget_s=0.15, device=device) - call_s
        points.append((sum(p.numel() * p.element_size() for p in chain.parameters()), max(seconds, 1e-8)))
    return points


class _Bag(torch.nn.Module):
    def __init__(self, rows: int, dim: int) -> None:
        super().__init__()
        self.bag = torch.nn.EmbeddingBag(rows, dim, mode="mean")

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.bag(ids, offsets)
        return output


class _Gather(torch.nn.Module):
    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return x.index_select(0, index)


class _Scatter(torch.nn.Module):
    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x).index_add_(0, index, x)


def _point(module: torch.nn.Module, args: tuple[torch.Tensor, ...], kind: str, base_s: float,
           repeats: int, device: str = "cpu") -> SweepPoint | None:
    """One sweep point: the kind's ops in one call, and the call's time less the call overhead, per op."""
    scripted = _scripted(module.to(device))
    args = tuple(arg.to(device) for arg in args)
    ops = [op for op in trace(lambda: scripted(*args)) if op.kind == kind]
    if not ops:
        return None
    with torch.inference_mode():
        seconds = median_s(lambda: scripted(*args), repeats, budget_s=0.15, device=device) - base_s
    main = max(ops, key=lambda op: (op.flops, op.bytes))
    return SweepPoint(sum(op.flops for op in ops) // len(ops), sum(op.bytes for op in ops) // len(ops),
                      max(seconds, 1e-8) / len(ops), main.name, main.reduction)


class _Chained(torch.nn.Module):
    def __init__(self, op: torch.nn.Module, times: int) -> None:
        super().__init__()
        self.op, self.times = op, times

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.times):
            x = self.op(x)
        return x


def _chained(op: torch.nn.Module, times: int) -> torch.nn.Module:
    """``op`` applied ``times`` times in one call: each point is then an op's
    cost inside a chain of ops, as in a model, and tiny ops are timed over
    several (ops that change the shape run once)."""
    return _Chained(op, times) if times > 1 else op


class _Add(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x


_CHAINED_ADDS = 64


class _Mean(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean([2, 3])


def _memory_op(op: str, channels: int, width: int) -> torch.nn.Module:
    """One memory-bound op on a 4-d activation (a module each: branching
    inside one scripted module would add interpreter time to every point)."""
    makers: dict[str, Callable[[], torch.nn.Module]] = {
        "clone": _Clone, "add": _Add, "mean": _Mean, "relu": torch.nn.ReLU, "hardtanh": torch.nn.ReLU6,
        "gelu": torch.nn.GELU, "sigmoid": torch.nn.Sigmoid,
        "batch_norm": lambda: torch.nn.BatchNorm2d(channels), "max_pool2d": lambda: torch.nn.MaxPool2d(2),
        "layer_norm": lambda: torch.nn.LayerNorm(width), "softmax": lambda: torch.nn.Softmax(-1),
    }
    return makers[op]()


def _sweeps() -> dict[str, Iterable[tuple[torch.nn.Module, tuple[torch.Tensor, ...]]]]:
    limit = 3e9  # FLOPs per point: large enough to reach the plateau, short enough to sweep in a minute
    gemm = ((torch.nn.Linear(k, n), (torch.randn(m, k),))
            for m in (1, 4, 16, 64, 256)
            for k, n in ((16, 64), (64, 64), (128, 256), (256, 256), (512, 512), (1024, 1024), (1024, 4096),
                         (4096, 1024), (2048, 2048))
            if 2 * m * k * n <= limit)
    conv = ((torch.nn.Conv2d(c, c2, k, padding=k // 2), (torch.randn(b, c, hw, hw),))
            for b in (1, 4, 16) for k in (1, 3)
            for c, c2 in ((3, 16), (3, 32), (16, 32), (32, 64), (64, 64), (64, 128), (128, 256), (256, 256))
            for hw in (8, 16, 32, 64, 128)
            if 2 * b * c2 * hw * hw * c * k * k <= limit and not (k == 1 and c == 3))
    dwconv = ((torch.nn.Conv2d(c, c, 3, padding=1, groups=c), (torch.randn(b, c, hw, hw),))
              for b in (1, 4, 16) for c in (16, 64, 256, 512) for hw in (7, 14, 28, 56, 112)
              if b * c * hw * hw <= 2**24)
    rnn = ((_RNN(cell, w, h), (torch.randn(b, t, w),))
           for cell in (torch.nn.LSTM, torch.nn.GRU) for w, h in ((32, 64), (64, 128), (128, 256))
           for b in (1, 16) for t in (8, 32))
    memory = ((_chained(_memory_op(op, c, hw), 1 if op in ("max_pool2d", "mean") else 8),
               (torch.randn(b, c, hw, hw),))
              for op in ("clone", "relu", "hardtanh", "add", "batch_norm", "max_pool2d", "mean", "layer_norm",
                         "softmax", "gelu", "sigmoid")
              for b, c, hw in ((1, 16, 4), (1, 16, 16), (1, 32, 32), (4, 32, 32), (4, 64, 64), (16, 64, 64),
                               (16, 32, 128)))
    bags = ((_Bag(rows, dim), (torch.randint(0, rows, (b * per,)), torch.arange(0, b * per, per)))
            for rows, dim in ((10_000, 32), (200_000, 128)) for b in (1, 16) for per in (10, 100))
    # Random-access row gathers and scatters (message passing), 4 edges per node.
    rows_moved = ((module(), (torch.randn(n * (4 if module is _Gather else 1), d), torch.randint(0, n, (4 * n,))))
                  for module in (_Gather, _Scatter) for n in (64, 512, 4096, 16384) for d in (16, 64, 256))
    gather = itertools.chain(bags, _scatter_args(rows_moved))
    return {GEMM: gemm, CONV: conv, DWCONV: dwconv, RNN: rnn, GATHER: gather, MEMORY: memory}


def _scatter_args(points: Iterable[tuple[torch.nn.Module, tuple[torch.Tensor, ...]]]
                  ) -> Iterable[tuple[torch.nn.Module, tuple[torch.Tensor, ...]]]:
    """Scatters add one row per index: their source has as many rows as indices."""
    for module, (x, index) in points:
        if isinstance(module, _Scatter):
            x = torch.randn(index.numel(), x.shape[1])
            index = torch.randint(0, max(1, index.numel() // 4), (index.numel(),))
        yield module, (x, index)


def fit_kind(points: Sequence[SweepPoint], bytes_per_s: float | None = None) -> KindFit:
    """The op cost model that best fits ``points`` in relative error: a grid
    over the rate, the overhead from the median residual at each rate."""
    if bytes_per_s is None:  # memory-bound ops: bytes alone
        best = None
        for rate in (10 ** (7 + i / 20) for i in range(100)):
            overhead = max(0.0, statistics.median(p.seconds - p.bytes / rate for p in points))
            error = statistics.mean(abs(math.log((overhead + p.bytes / rate) / p.seconds)) for p in points)
            if best is None or error < best[0]:
                best = (error, KindFit(overhead_s=overhead, flops_per_s=None, bytes_per_s=rate))
        assert best is not None
        return best[1]
    best = None
    for rate in (10 ** (8 + i / 20) for i in range(100)):
        floor = [max(p.flops / rate, p.bytes / bytes_per_s) for p in points]
        overhead = max(0.0, statistics.median(p.seconds - x for p, x in zip(points, floor, strict=True)))
        error = statistics.mean(abs(math.log((overhead + x) / p.seconds)) for p, x in zip(points, floor, strict=True))
        if best is None or error < best[0]:
            best = (error, KindFit(overhead_s=overhead, flops_per_s=rate, bytes_per_s=bytes_per_s))
    assert best is not None
    return best[1]


def calibrate(worker_type: str, repeats: int = 5, device: str = "cpu", quick: bool = False) -> Calibration:
    """Run every sweep here, on ``device`` (``cpu`` or a CUDA device), and fit
    each kind. Takes tens of seconds; ``quick`` runs every fourth point of
    each sweep (for tests: the same code, a coarser calibration)."""
    with torch.inference_mode():
        identity, views = _scripted(_Identity()), _scripted(_Views())
        x = torch.zeros(1, device=device)
        identity_s = median_s(lambda: identity(x), repeats, device=device)
        view_s = max(0.0, (median_s(lambda: views(x), repeats, device=device) - identity_s) / (32 * 3))
        # A call that runs ops costs more than one that runs none (its output is
        # a new tensor): the call overhead is one op's call less that op's cost
        # inside a chain, so that each sweep point is an op's cost inside a model.
        add, adds = _scripted(_Add()), _scripted(_chained(_Add(), _CHAINED_ADDS))
        row = torch.zeros(1, 64, device=device)
        chained_s = (median_s(lambda: adds(row), repeats, device=device) - identity_s) / _CHAINED_ADDS
        call_s = max(identity_s, median_s(lambda: add(row), repeats, device=device) - chained_s)
    points: dict[str, list[SweepPoint]] = {}
    for kind, sweep in _sweeps().items():
        chosen = itertools.islice(sweep, 0, None, 4 if quick else 1)
        points[kind] = [p for module, args in chosen if (p := _point(module, args, kind, call_s, repeats, device))]
    with torch.inference_mode():
        streaming = _streaming(call_s, repeats, device)
    memory = fit_kind(points[MEMORY])
    kinds = {MEMORY: memory, GATHER: fit_kind(points[GATHER])}
    for kind in (GEMM, CONV, DWCONV, RNN):
        kinds[kind] = fit_kind(points[kind], memory.bytes_per_s)
    return Calibration(
        worker_type=worker_type, calibrated=True, host=platform.node(), threads=torch.get_num_threads(),
        torch_version=torch.__version__, measured_at=datetime.now(UTC), call_overhead_s=call_s, view_overhead_s=view_s,
        kinds=kinds, points=points,
        streaming=streaming,
    )


