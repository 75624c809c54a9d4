"""A reference zoo: 66 small models in 16 families (MLP, CNN, depthwise
CNN, Transformer encoder, LSTM/GRU, graph convolution, embedding-bag
recommender; residual, grouped-convolution, encoder-decoder with upsampling,
transposed-convolution decoder, 1-D convolution over audio, MLP-mixer,
recurrent decoder, very wide MLP, many tiny ops), plus a ResNet-50-shaped
network, on which the latency benchmark scores the predictor, leave one
family out. ``benchmarks.latency_prediction --zoo MODULE`` scores any module
with a ``zoo()`` that returns these entries."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
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
    for a, b in pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def _cnn(channels: list[int], classes: int = 10) -> nn.Module:
    layers: list[nn.Module] = []
    for a, b in pairwise(channels):
        layers += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], classes))


def _depthwise(channels: list[int]) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 3, stride=2, padding=1), nn.ReLU6()]
    for a, b in pairwise(channels):
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


class _Residual(nn.Module):
    """A small ResNet: basic blocks of two 3x3 convolutions and a skip."""

    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks: list[nn.Module] = []
        for a, b in pairwise(widths):
            blocks.append(_Basic(a, b, 2 if b != a else 1))
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(widths[-1], 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean([2, 3]))


class _Basic(nn.Module):
    def __init__(self, a: int, b: int, stride: int, groups: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(a, b, 3, stride, 1, groups=groups if a % groups == 0 else 1, bias=False), nn.BatchNorm2d(b),
            nn.ReLU(), nn.Conv2d(b, b, 3, 1, 1, groups=groups, bias=False), nn.BatchNorm2d(b))
        self.skip = (nn.Sequential(nn.Conv2d(a, b, 1, stride, bias=False), nn.BatchNorm2d(b))
                     if stride != 1 or a != b else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def _grouped(widths: list[int], groups: int) -> nn.Module:
    """ResNeXt-style: blocks whose 3x3 convolutions are grouped."""
    layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1), nn.ReLU()]
    for a, b in pairwise(widths):
        layers.append(_Basic(a, b, 2, groups))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], 10))


class _UNet(nn.Module):
    """An encoder-decoder: convolutions and pooling down, bilinear upsampling and skips up."""

    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        self.down = nn.ModuleList([nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.ReLU())
                                   for a, b in zip([3] + widths[:-1], widths, strict=True)])
        self.up = nn.ModuleList([nn.Sequential(nn.Conv2d(b + a, a, 3, padding=1), nn.ReLU())
                                 for a, b in pairwise(widths)][::-1])
        self.out = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        for i, layer in enumerate(self.down):
            x = layer(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = nn.functional.max_pool2d(x, 2)
        for layer in self.up:
            skip = skips.pop()
            x = nn.functional.interpolate(x, size=[skip.shape[2], skip.shape[3]], mode="bilinear",
                                          align_corners=False)
            x = layer(torch.cat([x, skip], 1))
        return self.out(x)


def _transposed(latent: int, widths: list[int]) -> nn.Module:
    """A generator-style decoder: a linear layer to 4x4, then transposed convolutions doubling the size."""
    layers: list[nn.Module] = [nn.Linear(latent, widths[0] * 16), nn.Unflatten(1, (widths[0], 4, 4))]
    for a, b in pairwise(widths):
        layers += [nn.ConvTranspose2d(a, b, 4, 2, 1), nn.BatchNorm2d(b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(widths[-1], 3, 3, padding=1), nn.Tanh())


def _audio(channels: list[int], kernel: int) -> nn.Module:
    """1-D convolutions over a waveform (strided, as keyword spotters do)."""
    layers: list[nn.Module] = [nn.Conv1d(1, channels[0], 80, stride=16), nn.BatchNorm1d(channels[0]), nn.ReLU()]
    for a, b in pairwise(channels):
        layers += [nn.Conv1d(a, b, kernel, padding=kernel // 2), nn.BatchNorm1d(b), nn.ReLU(), nn.MaxPool1d(4)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(channels[-1], 12))


class _MixerBlock(nn.Module):
    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.tokens = nn.Sequential(nn.Linear(tokens, 2 * tokens), nn.GELU(), nn.Linear(2 * tokens, tokens))
        self.channels = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channels(self.norm2(x))


class _Mixer(nn.Module):
    """MLP-Mixer on image patches."""

    def __init__(self, size: int, patch: int, dim: int, depth: int) -> None:
        super().__init__()
        self.patches = nn.Conv2d(3, dim, patch, patch)
        self.blocks = nn.Sequential(*[_MixerBlock((size // patch) ** 2, dim) for _ in range(depth)])
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patches(x).flatten(2).transpose(1, 2)
        return self.head(self.blocks(x).mean(1))


class _Decoder(nn.Module):
    """An autoregressive recurrent decoder: each step's output is the next step's input."""

    def __init__(self, hidden: int, out: int, steps: int) -> None:
        super().__init__()
        self.cell = nn.GRUCell(out, hidden)
        self.proj = nn.Linear(hidden, out)
        self.out, self.steps = out, steps

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = torch.zeros(h.shape[0], self.out)
        outs: list[torch.Tensor] = []
        for _ in range(self.steps):
            h = self.cell(y, h)
            y = self.proj(h)
            outs.append(y)
        return torch.stack(outs, 1)


class _TinyOps(nn.Module):
    """Many tiny elementwise ops and small layers: dispatch, not arithmetic."""

    def __init__(self, width: int, repeats: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(width, width) for _ in range(4)])
        self.repeats = repeats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.repeats):
            x = (x * 1.01 + 0.1).relu() - x.sigmoid() * 0.5
        for layer in self.layers:
            x = layer(x).tanh()
        return x


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
    wave = lambda samples: (lambda b: (torch.randn(b, 1, samples),))  # noqa: E731
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
        Entry("residual", "res-16-32-64@32", _Residual([16, 32, 64]), image(32)),
        Entry("residual", "res-32-64-128@64", _Residual([32, 64, 128]), image(64)),
        Entry("residual", "res-64-64-128-256@64", _Residual([64, 64, 128, 256]), image(64)),
        Entry("residual", "res-16-16-32@128", _Residual([16, 16, 32]), image(128)),
        Entry("grouped", "gconv-32-64-g4@32", _grouped([32, 64], 4), image(32)),
        Entry("grouped", "gconv-64-128-256-g8@64", _grouped([64, 128, 256], 8), image(64)),
        Entry("grouped", "gconv-64-128-g32@64", _grouped([64, 128], 32), image(64)),
        Entry("grouped", "gconv-32-64-128-g16@96", _grouped([32, 64, 128], 16), image(96)),
        Entry("unet", "unet-16-32@64", _UNet([16, 32]), image(64)),
        Entry("unet", "unet-16-32-64@64", _UNet([16, 32, 64]), image(64)),
        Entry("unet", "unet-32-64-128@128", _UNet([32, 64, 128]), image(128)),
        Entry("unet", "unet-8-16-32-64@96", _UNet([8, 16, 32, 64]), image(96)),
        Entry("transposed", "tconv-z32-64-32@16", _transposed(32, [64, 32]), rows(32)),
        Entry("transposed", "tconv-z64-128-64-32@32", _transposed(64, [128, 64, 32]), rows(64)),
        Entry("transposed", "tconv-z100-256-128-64@32", _transposed(100, [256, 128, 64]), rows(100)),
        Entry("transposed", "tconv-z64-64-32-16-8@64", _transposed(64, [64, 32, 16, 8]), rows(64)),
        Entry("audio", "conv1d-32-64-k9-1s", _audio([32, 64], 9), wave(16_000)),
        Entry("audio", "conv1d-64-128-128-k5-1s", _audio([64, 128, 128], 5), wave(16_000)),
        Entry("audio", "conv1d-32-32-k3-4s", _audio([32, 32], 3), wave(64_000)),
        Entry("audio", "conv1d-128-256-k7-2s", _audio([128, 256], 7), wave(32_000)),
        Entry("mixer", "mixer-32-p8-d64x2", _Mixer(32, 8, 64, 2), image(32)),
        Entry("mixer", "mixer-64-p8-d128x4", _Mixer(64, 8, 128, 4), image(64)),
        Entry("mixer", "mixer-64-p16-d256x2", _Mixer(64, 16, 256, 2), image(64)),
        Entry("mixer", "mixer-96-p8-d96x3", _Mixer(96, 8, 96, 3), image(96)),
        Entry("decoder", "gru-dec-64-8-T16", _Decoder(64, 8, 16), rows(64)),
        Entry("decoder", "gru-dec-128-32-T32", _Decoder(128, 32, 32), rows(128)),
        Entry("decoder", "gru-dec-256-64-T16", _Decoder(256, 64, 16), rows(256)),
        Entry("decoder", "gru-dec-32-4-T64", _Decoder(32, 4, 64), rows(32)),
        Entry("wide", "wide-4096-4096", _mlp([1024, 4096, 4096, 10]), rows(1024)),
        Entry("wide", "wide-2048x2", _mlp([2048, 2048, 2048, 10]), rows(2048)),
        Entry("wide", "wide-8192-1", _mlp([256, 8192, 10]), rows(256)),
        Entry("wide", "deep-64x32", _mlp([64] * 33 + [10]), rows(64)),
        Entry("tiny-ops", "tiny-16x50", _TinyOps(16, 50), rows(16)),
        Entry("tiny-ops", "tiny-64x20", _TinyOps(64, 20), rows(64)),
        Entry("tiny-ops", "tiny-256x10", _TinyOps(256, 10), rows(256)),
        Entry("tiny-ops", "tiny-32x100", _TinyOps(32, 100), rows(32)),
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
