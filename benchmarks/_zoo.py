"""A reference zoo: 30 small models in seven families (MLP, CNN, depthwise
CNN, Transformer encoder, LSTM/GRU, graph convolution, embedding-bag
recommender), plus a ResNet-50-shaped network, on which the latency
benchmark scores the predictor, leave one family out."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["Entry", "zoo", "resnet50", "measure_s"]


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


def measure_s(model: Any, args: tuple[torch.Tensor, ...], repeats: int = 9) -> float:
    """Median seconds per call, in inference mode, after a warm-up."""
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
