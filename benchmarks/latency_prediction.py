"""Predicted vs measured latency on this machine's CPU worker, for a zoo of
models in seven families at two batch sizes.

    .venv/bin/python -m benchmarks.latency_prediction [--threads 1]

1. Calibrate this node (seedserve.profiler.calibrate: GEMM, convolution,
   depthwise, recurrent and copy sweeps; nothing from the zoo).
2. For each zoo model and batch size: profile it (one traced call), predict
   its latency, and measure its median latency as a replica runs it
   (TorchScript, inference mode, the replicas' thread count).
3. Score the calibrated roofline beside two baselines: uncalibrated
   (2 x ptflops MACs / the catalog's peak FLOP/s) and a two-parameter fit
   (latency = a + b x FLOPs, least squares in log space). Every score is
   leave-one-family-out: a family's predictions use only what was fitted
   without it. The roofline fits nothing on the zoo, so for it this is the
   plain score; the two-parameter fit is refitted once per held-out family.
Writes benchmarks/results/latency_prediction.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seedserve.profiler.calibrate import calibrate
from seedserve.profiler.catalog import load_catalog
from seedserve.profiler.predict import predict_s
from seedserve.profiler.profile import profile_model

RESULTS = Path(__file__).resolve().parent / "results"
BATCHES = (1, 16)


@dataclass
class Entry:
    family: str
    name: str
    module: nn.Module
    make: Callable[[int], tuple[torch.Tensor, ...]]


def _mlp(widths: list[int]) -> nn.Module:
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def _cnn(channels: list[int], classes: int = 10) -> nn.Module:
    layers: list[nn.Module] = []
    for a, b in zip(channels, channels[1:]):
        layers += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], classes))


def _depthwise(channels: list[int]) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 3, stride=2, padding=1), nn.ReLU6()]
    for a, b in zip(channels, channels[1:]):
        layers += [nn.Conv2d(a, a, 3, padding=1, groups=a), nn.BatchNorm2d(a), nn.ReLU6(),
                   nn.Conv2d(a, b, 1), nn.BatchNorm2d(b), nn.ReLU6(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], 10))


class _Encoder(nn.Module):
    def __init__(self, d: int, heads: int, layers: int) -> None:
        super().__init__()
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, heads, 4 * d, batch_first=True), layers)
        self.head = nn.Linear(d, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(1))


class _Recurrent(nn.Module):
    def __init__(self, cell: type[nn.Module], width: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.rnn = cell(width, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


class _GCN(nn.Module):
    """Graph convolution by message passing: h' = relu(W (h + sum of neighbours))."""

    def __init__(self, width: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(width if i == 0 else hidden, hidden) for i in range(layers)])
        self.head = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            messages = torch.zeros_like(x).index_add_(0, edges[1], x.index_select(0, edges[0]))
            x = torch.relu(layer(x + messages))
        return self.head(x.mean(0, keepdim=True))


class _Recommender(nn.Module):
    def __init__(self, rows: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.items = nn.EmbeddingBag(rows, dim, mode="mean")
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.items(ids, offsets))


class _Bottleneck(nn.Module):
    def __init__(self, width: int, mid: int, out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, out, 1, bias=False), nn.BatchNorm2d(out))
        self.skip = (nn.Sequential(nn.Conv2d(width, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                     if stride != 1 or width != out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def resnet50() -> nn.Module:
    """ResNet-50's shape (3, 4, 6, 3 bottlenecks; 25.6 M parameters, ~4.1 G multiply-adds at 224x224)."""
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                               nn.MaxPool2d(3, 2, 1)]
    width = 64
    for blocks, mid, stride in ((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)):
        for i in range(blocks):
            layers.append(_Bottleneck(width, mid, mid * 4, stride if i == 0 else 1))
            width = mid * 4
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000)).eval()


def _graph(nodes: int, width: int) -> Callable[[int], tuple[torch.Tensor, ...]]:
    def make(batch: int) -> tuple[torch.Tensor, ...]:
        n = nodes * batch
        edges = torch.randint(0, n, (2, n * 4))
        return torch.randn(n, width), edges
    return make


def _bags(rows: int, per_bag: int) -> Callable[[int], tuple[torch.Tensor, ...]]:
    def make(batch: int) -> tuple[torch.Tensor, ...]:
        return torch.randint(0, rows, (batch * per_bag,)), torch.arange(0, batch * per_bag, per_bag)
    return make


def zoo() -> list[Entry]:
    torch.manual_seed(0)
    image = lambda size: (lambda b: (torch.randn(b, 3, size, size),))  # noqa: E731
    seq = lambda length, width: (lambda b: (torch.randn(b, length, width),))  # noqa: E731
    rows = lambda width: (lambda b: (torch.randn(b, width),))  # noqa: E731
    entries = [
        Entry("mlp", "mlp-16-64-4", _mlp([16, 64, 4]), rows(16)),
        Entry("mlp", "mlp-128-256-10", _mlp([128, 256, 10]), rows(128)),
        Entry("mlp", "mlp-512x3", _mlp([512, 512, 512, 10]), rows(512)),
        Entry("mlp", "mlp-1024-2048-1024", _mlp([1024, 2048, 1024, 10]), rows(1024)),
        Entry("mlp", "mlp-deep-256x8", _mlp([256] * 9 + [10]), rows(256)),
        Entry("cnn", "cnn-3-16-32@32", _cnn([3, 16, 32]), image(32)),
        Entry("cnn", "cnn-3-32-64-128@64", _cnn([3, 32, 64, 128]), image(64)),
        Entry("cnn", "cnn-3-64-128-256@64", _cnn([3, 64, 128, 256]), image(64)),
        Entry("cnn", "cnn-3-32-64@128", _cnn([3, 32, 64]), image(128)),
        Entry("cnn", "cnn-3-16x5@96", _cnn([3, 16, 16, 16, 16, 16]), image(96)),
        Entry("depthwise", "dw-32-64-128@64", _depthwise([32, 64, 128]), image(64)),
        Entry("depthwise", "dw-32-64-128-256@128", _depthwise([32, 64, 128, 256]), image(128)),
        Entry("depthwise", "dw-16-32@96", _depthwise([16, 32]), image(96)),
        Entry("depthwise", "dw-64-128-256-512@96", _depthwise([64, 128, 256, 512]), image(96)),
        Entry("transformer", "enc-64x1-h4-L16", _Encoder(64, 4, 1), seq(16, 64)),
        Entry("transformer", "enc-128x2-h4-L32", _Encoder(128, 4, 2), seq(32, 128)),
        Entry("transformer", "enc-256x2-h8-L32", _Encoder(256, 8, 2), seq(32, 256)),
        Entry("transformer", "enc-128x4-h8-L64", _Encoder(128, 8, 4), seq(64, 128)),
        Entry("recurrent", "lstm-32-64-T16", _Recurrent(nn.LSTM, 32, 64, 1), seq(16, 32)),
        Entry("recurrent", "lstm-64-128x2-T32", _Recurrent(nn.LSTM, 64, 128, 2), seq(32, 64)),
        Entry("recurrent", "gru-32-64-T32", _Recurrent(nn.GRU, 32, 64, 1), seq(32, 32)),
        Entry("recurrent", "gru-128-256-T16", _Recurrent(nn.GRU, 128, 256, 1), seq(16, 128)),
        Entry("graph", "gcn-16-32x2-n64", _GCN(16, 32, 2), _graph(64, 16)),
        Entry("graph", "gcn-64-64x3-n256", _GCN(64, 64, 3), _graph(256, 64)),
        Entry("graph", "gcn-32-128x2-n512", _GCN(32, 128, 2), _graph(512, 32)),
        Entry("graph", "gcn-128-256x2-n128", _GCN(128, 256, 2), _graph(128, 128)),
        Entry("recommender", "ebag-10k-32-64-b20", _Recommender(10_000, 32, 64), _bags(10_000, 20)),
        Entry("recommender", "ebag-100k-64-128-b50", _Recommender(100_000, 64, 128), _bags(100_000, 50)),
        Entry("recommender", "ebag-50k-128-256-b10", _Recommender(50_000, 128, 256), _bags(50_000, 10)),
        Entry("recommender", "ebag-200k-32-512-b100", _Recommender(200_000, 32, 512), _bags(200_000, 100)),
    ]
    for entry in entries:
        entry.module.eval()
    return entries


def _measure_s(model: Any, args: tuple[torch.Tensor, ...], repeats: int = 9) -> float:
    with torch.inference_mode():
        for _ in range(3):
            model(*args)
        start = time.perf_counter()
        model(*args)
        once = time.perf_counter() - start
        inner = max(1, min(100, int(0.05 / max(once, 1e-6))))
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(inner):
                model(*args)
            samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def _spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _score(predicted: list[float], measured: list[float]) -> dict[str, float]:
    errors = [abs(p - m) / m for p, m in zip(predicted, measured)]
    ratios = [max(p / m, m / p) for p, m in zip(predicted, measured)]
    return {"mape": 100 * statistics.mean(errors), "within_20pct": 100 * sum(e <= 0.2 for e in errors) / len(errors),
            "spearman": _spearman(predicted, measured), "worst_ratio": max(ratios),
            "off_by_2x": sum(r > 2 for r in ratios)}


def _two_parameter_lofo(rows: list[dict[str, Any]]) -> list[float]:
    """latency = a + b x FLOPs, fitted (in log error, by a grid over a) on every other family."""
    predicted = []
    for row in rows:
        train = [r for r in rows if r["family"] != row["family"]]
        best = None
        for a in (10 ** (-6 + i / 10) for i in range(50)):
            residual = [r["measured_s"] - a for r in train]
            bs = [res / max(r["flops"], 1) for res, r in zip(residual, train) if res > 0 and r["flops"] > 0]
            if not bs:
                continue
            b = statistics.median(bs)
            error = statistics.mean(abs(math.log((a + b * r["flops"]) / r["measured_s"])) for r in train)
            if best is None or error < best[0]:
                best = (error, a, b)
        assert best is not None
        predicted.append(best[1] + best[2] * row["flops"])
    return predicted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (replicas run with 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    calibration = calibrate("cpu-local")
    calibration_s = time.perf_counter() - start
    peak = load_catalog().get("cpu-local").peak_fp32 * args.threads / 2  # the catalog's peak is for both cores
    rows = []
    for entry in zoo():
        scripted = torch.jit.script(entry.module)
        started = time.perf_counter()
        profile = profile_model(scripted, entry.make, lambda m, a: m(*a), BATCHES)
        profile_s = time.perf_counter() - started
        for batch in BATCHES:
            inputs = entry.make(batch)
            at = profile.at(batch)
            measured = _measure_s(scripted, inputs)
            rows.append({"family": entry.family, "model": entry.name, "batch": batch, "flops": at.flops,
                         "ptflops_flops": 2 * (at.ptflops_macs or 0), "measured_s": measured,
                         "roofline_s": predict_s(at, calibration)[0], "profile_s": profile_s,
                         "uncalibrated_s": max(2 * (at.ptflops_macs or 0), 1) / peak})
            print(f"{entry.family:12} {entry.name:26} b={batch:<3} measured {measured * 1e3:8.3f} ms  "
                  f"roofline {rows[-1]['roofline_s'] * 1e3:8.3f} ms", flush=True)
    big = torch.jit.script(resnet50())
    started = time.perf_counter()
    big_profile = profile_model(big, lambda n: (torch.randn(n, 3, 224, 224),), lambda m, a: m(*a), (1, 8))
    resnet = {"seconds": time.perf_counter() - started, "parameters": big_profile.parameters,
              "flops_batch_1": big_profile.at(1).flops}
    print(f"profiled ResNet-50 in {resnet['seconds']:.1f} s", flush=True)
    for row, fit in zip(rows, _two_parameter_lofo(rows)):
        row["two_parameter_s"] = fit
    measured = [r["measured_s"] for r in rows]
    scores = {name: _score([r[f"{key}_s"] for r in rows], measured) for name, key in
              (("calibrated roofline (seedserve)", "roofline"), ("uncalibrated 2*MACs/peak", "uncalibrated"),
               ("two-parameter fit a + b*FLOPs", "two_parameter"))}
    per_family = {family: _score([r["roofline_s"] for r in rows if r["family"] == family],
                                 [r["measured_s"] for r in rows if r["family"] == family])
                  for family in dict.fromkeys(r["family"] for r in rows)}
    _write(rows, scores, per_family, calibration.model_dump(mode="json", exclude={"points"}), calibration_s, resnet,
           args)


def _write(rows: list[dict[str, Any]], scores: dict[str, dict[str, float]], per_family: dict[str, dict[str, float]],
           calibration: dict[str, Any], calibration_s: float, resnet: dict[str, float], args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (RESULTS / "latency_prediction.json").write_text(json.dumps(
        {"date": date, "threads": args.threads, "calibration": calibration, "calibration_s": calibration_s,
         "resnet50_profile": resnet,
         "scores": scores, "per_family": per_family, "rows": rows}, indent=2, default=str) + "\n")
    families = len({r["family"] for r in rows})
    lines = [f"Measured {date}: {len(rows) // len(BATCHES)} models in {families} families x batch {BATCHES}, "
             f"{args.threads} torch thread(s) (as replicas run), TorchScript in inference mode, median of 9. "
             f"Calibration took {calibration_s:.0f} s. Targets: MAPE <= 15 %, >= 80 % within 20 %, "
             "Spearman >= 0.95, none off by more than 2x.", "",
             "| predictor (leave-one-family-out) | MAPE | within 20 % | Spearman | worst ratio | off by > 2x |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in scores.items():
        lines.append(f"| {name} | {s['mape']:.1f} % | {s['within_20pct']:.0f} % | {s['spearman']:.3f} "
                     f"| {s['worst_ratio']:.2f}x | {s['off_by_2x']:.0f} |")
    lines += ["", "| family (calibrated roofline) | MAPE | within 20 % | worst ratio |", "|---|---:|---:|---:|"]
    for family, s in per_family.items():
        lines.append(f"| {family} | {s['mape']:.1f} % | {s['within_20pct']:.0f} % | {s['worst_ratio']:.2f}x |")
    slowest = max(r["profile_s"] for r in rows)
    lines += ["", f"Profiling (trace at batch 1 and 16 plus the ptflops count) took at most {slowest:.2f} s per zoo "
              f"model; a ResNet-50-sized model ({resnet['parameters'] / 1e6:.1f} M parameters, "
              f"{resnet['flops_batch_1'] / 1e9:.1f} GFLOPs at batch 1) took {resnet['seconds']:.1f} s (batch 1 and 8)."]
    (RESULTS / "latency_prediction.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 6))
    for family in dict.fromkeys(r["family"] for r in rows):
        pts = [(r["measured_s"] * 1e3, r["roofline_s"] * 1e3) for r in rows if r["family"] == family]
        ax.scatter(*zip(*pts), label=family, s=18)
    low = min(min(r["measured_s"], r["roofline_s"]) for r in rows) * 1e3 / 1.5
    high = max(max(r["measured_s"], r["roofline_s"]) for r in rows) * 1e3 * 1.5
    ax.plot([low, high], [low, high], "k-", lw=0.8)
    ax.plot([low, high], [low * 1.2, high * 1.2], "k:", lw=0.6)
    ax.plot([low, high], [low / 1.2, high / 1.2], "k:", lw=0.6)
    ax.set(xscale="log", yscale="log", xlabel="measured median latency (ms)", ylabel="predicted (ms)",
           title="seedserve calibrated roofline, this CPU")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "latency_prediction.png", dpi=120)


if __name__ == "__main__":
    main()
