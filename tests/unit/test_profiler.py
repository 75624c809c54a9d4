"""The profiler: FLOPs of reference layers against their analytic counts
(and ptflops' independent count), and the worker recommendation's three cases."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seedserve.codecs.schema import Objective
from seedserve.profiler.calibrate import Calibration
from seedserve.profiler.catalog import load_catalog
from seedserve.profiler.predict import assumed_calibration, predict, recommend, terms_s
from seedserve.profiler.profile import BatchProfile, ModelProfile, profile_model


class _RNN(nn.Module):
    def __init__(self, cell: type[nn.Module]) -> None:
        super().__init__()
        self.rnn = cell(24, 40, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(32, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x, x, x, need_weights=False)[0]


def _profile(module: nn.Module, shape: tuple[int, ...], scripted: bool = True) -> ModelProfile:
    model = torch.jit.script(module.eval()) if scripted else module.eval()
    return profile_model(model, lambda n: (torch.randn(n, *shape),), lambda m, args: m(*args), (1, 3))


B = 3  # the second profiled batch size
CASES = {
    # name: (module, input shape without batch, analytic FLOPs at batch B: 2 per multiply-add)
    "linear": (nn.Linear(48, 20), (48,), 2 * B * 48 * 20),
    "conv2d": (nn.Conv2d(3, 8, 3), (3, 12, 12), 2 * B * 8 * 10 * 10 * 3 * 3 * 3),
    "depthwise conv2d": (nn.Conv2d(16, 16, 3, padding=1, groups=16), (16, 10, 10), 2 * B * 16 * 10 * 10 * 3 * 3),
    "lstm": (_RNN(nn.LSTM), (7, 24), 2 * B * 7 * 4 * 40 * (24 + 40)),
    "gru": (_RNN(nn.GRU), (7, 24), 2 * B * 7 * 3 * 40 * (24 + 40)),
    # in projections (q, k, v), scores and weighted sum over all heads, output projection
    "attention": (_Attention(), (5, 32), 2 * B * 5 * 32 * 32 * 3 + 2 * B * 5 * 5 * 32 * 2 + 2 * B * 5 * 32 * 32),
    "small model": (nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)),
                    (3, 6, 6), 2 * B * (4 * 6 * 6 * 27 + 144 * 5)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_flops_equal_the_analytic_count(name: str) -> None:
    module, shape, expected = CASES[name]
    for scripted in (True, False):
        profile = _profile(module, shape, scripted=scripted)
        assert profile.at(B).flops == expected, (name, scripted)
        assert profile.at(1).flops * B == expected
        assert not profile.at(B).uncounted_ops


def test_ptflops_counts_the_same_products_plus_the_bias_additions() -> None:
    profile = _profile(nn.Linear(48, 20), (48,))
    assert profile.at(B).ptflops_macs == B * (48 * 20 + 20)
    conv = _profile(nn.Conv2d(3, 8, 3), (3, 12, 12))
    assert conv.at(B).ptflops_macs == B * 8 * 10 * 10 * (3 * 3 * 3 + 1)


def test_parameters_and_weight_bytes() -> None:
    profile = _profile(nn.Linear(48, 20), (48,))
    assert profile.parameters == 48 * 20 + 20
    assert profile.weight_bytes == 4 * (48 * 20 + 20)
    assert profile.at(1).activation_bytes >= 4 * 20


def _recommendation(module: nn.Module, shape: tuple[int, ...], objective: Objective):  # type: ignore[no-untyped-def]
    catalog = load_catalog()
    calibrations = {w.name: assumed_calibration(w, catalog) for w in catalog.types}
    return recommend(_profile(module, shape), objective, catalog, calibrations), catalog


def test_a_tiny_model_with_a_loose_target_gets_the_cheapest_cpu_type() -> None:
    recommendation, catalog = _recommendation(nn.Linear(16, 4), (16,), Objective(latency_ms=50, peak_rps=10))
    assert recommendation.choice is not None
    chosen = catalog.get(recommendation.choice.worker_type)
    cpu_prices = [w.price_per_hour for w in catalog.types if w.device == "cpu"]
    assert chosen.device == "cpu" and chosen.price_per_hour == min(cpu_prices)
    assert "cheapest" in recommendation.reasoning


def test_a_large_model_with_a_tight_target_gets_a_gpu_type() -> None:
    big = nn.Sequential(*(layer for _ in range(4) for layer in (nn.Linear(2048, 2048), nn.ReLU())))
    recommendation, catalog = _recommendation(big, (2048,), Objective(latency_ms=3.0, peak_rps=2000))
    assert recommendation.choice is not None, recommendation.reasoning
    assert catalog.get(recommendation.choice.worker_type).device == "gpu"
    cpu = [o for o in recommendation.options if catalog.get(o.worker_type).device == "cpu"]
    assert cpu and not any(o.meets for o in cpu)


def test_an_impossible_target_is_refused_with_the_reason() -> None:
    recommendation, _ = _recommendation(nn.Linear(16, 4), (16,), Objective(latency_ms=0.0001, percentile="p50"))
    assert recommendation.choice is None
    assert recommendation.reasoning.startswith("no worker type meets p50 <= 0.0001 ms")
    assert "fastest" in recommendation.reasoning


def test_predictions_say_what_they_assume() -> None:
    catalog = load_catalog()
    worker = catalog.get("nvidia-t4")
    prediction = predict(_profile(nn.Linear(16, 4), (16,)), worker, assumed_calibration(worker, catalog), 8)
    assert not prediction.calibrated and prediction.latency_ms > 0
    assert any("uncalibrated" in a for a in prediction.assumptions)
    assert any("one model call at a time" in a for a in prediction.assumptions)


def test_the_calibration_fit_recovers_a_known_rate_and_overhead() -> None:
    from seedserve.profiler.calibrate import SweepPoint, fit_kind

    rate, overhead, bandwidth = 5e10, 2e-5, 1e10
    points = [SweepPoint(f, b, overhead + max(f / rate, b / bandwidth)) for f, b in
              ((10**6, 10**4), (10**7, 10**5), (10**8, 10**6), (10**9, 10**6), (10**5, 10**6))]
    fit = fit_kind(points, bandwidth)
    assert fit.flops_per_s == pytest.approx(rate, rel=0.13)  # the grid has 20 steps per decade
    assert fit.overhead_s == pytest.approx(overhead, rel=0.3)


class _GRUAndBag(nn.Module):
    """A GRU (which TorchScript runs step by step, reading its weights every
    step) beside an embedding table (read only in the rows it gathers)."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 16, batch_first=True)
        self.bag = nn.EmbeddingBag(1000, 16, mode="mean")

    def forward(self, x: torch.Tensor, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0][:, -1] + self.bag(ids, offsets)


def test_the_weights_a_call_streams_count_each_parameter_once_and_no_embedding_table() -> None:
    model = torch.jit.script(_GRUAndBag().eval())
    profile = profile_model(model, lambda n: (torch.randn(n, 6, 8), torch.randint(0, 1000, (4 * n,)),
                                              torch.arange(0, 4 * n, 4)), lambda m, args: m(*args), (1, 3))
    gru = _GRUAndBag().gru
    gru_bytes = sum(p.numel() * 4 for p in gru.parameters())
    matrices = 4 * (gru.weight_ih_l0.numel() + gru.weight_hh_l0.numel())
    assert profile.weight_bytes == gru_bytes + 1000 * 16 * 4  # everything the model holds
    for batch in (1, 3):
        # What a call streams: the matrices (and biases the products add) once, not once per step (6 steps).
        assert matrices <= profile.at(batch).weight_bytes <= gru_bytes


class _MessagePassing(nn.Module):
    def forward(self, x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x).index_add_(0, edges[1], x.index_select(0, edges[0]))


def test_gathers_and_scatters_are_row_ops_with_their_index_count() -> None:
    model = torch.jit.script(_MessagePassing())
    profile = profile_model(model, lambda n: (torch.randn(10 * n, 4), torch.randint(0, 10 * n, (2, 30 * n))),
                            lambda m, args: m(*args), (1, 2))
    rows = {name: count for kind, _, _, name, count in profile.at(2).ops if kind == "gather"}
    assert rows == {"index_select": 60, "index_add_": 60}
    scaled = {name: count for kind, _, _, name, count in profile.at(8).ops if kind == "gather"}
    assert scaled == {"index_select": 240, "index_add_": 240}  # the rows grow with the batch


def _batch(ops: list[tuple[str, int, int, str, int]], weight_bytes: int = 0) -> BatchProfile:
    return BatchProfile(batch_size=1, flops=sum(op[1] for op in ops), ptflops_macs=None, activation_bytes=0,
                        traffic_bytes=0, by_kind=[], ops=ops, views=0, uncounted_ops=[], weight_bytes=weight_bytes)


def _calibration(**update: object) -> Calibration:
    catalog = load_catalog()
    base = assumed_calibration(catalog.get("cpu-local"), catalog).model_dump()
    return Calibration.model_validate({**base, **update})  # validated: sweep points become SweepPoints


def test_weights_that_do_not_fit_in_cache_floor_the_compute_time() -> None:
    mib = 2**20
    # Per byte: hot up to 1 MiB (0.05 ns), streamed from 4 MiB on (0.5 ns).
    calibration = _calibration(streaming=[(mib, 0.05e-9 * mib), (4 * mib, 0.5e-9 * 4 * mib),
                                          (64 * mib, 0.5e-9 * 64 * mib)])
    gemv = ("gemm", 2 * 2048 * 2048, 4 * 2048 * 2048, "addmm", 2048)
    cold = terms_s(_batch([gemv] * 4, weight_bytes=64 * mib), calibration)
    assert cold["weights"] == pytest.approx(0.5e-9 * 64 * mib - sum(cold[k] for k in ("gemm", "conv", "dwconv", "rnn")))
    assert cold["weights"] > 0
    small = ("gemm", 2 * 64 * 256 * 256, 4 * 256 * 256, "addmm", 256)  # 256 KiB of weights, 64 rows: compute-bound
    hot = terms_s(_batch([small], weight_bytes=256 * 1024), calibration)
    assert hot["gemm"] > 0 and hot["weights"] == 0  # in cache, the products take longer than reading the weights
    assert terms_s(_batch([gemv] * 4), calibration)["weights"] == 0  # an older profile: no floor
    profile = ModelProfile(parameters=0, weight_bytes=64 * mib, batches=[_batch([gemv] * 4, weight_bytes=64 * mib)],
                           notes=[])
    prediction = predict(profile, load_catalog().get("cpu-local"), calibration)
    assert any("64.0 MiB) do not stay in cache" in a for a in prediction.assumptions)
    assert prediction.memory_ms >= 0.5e-9 * 64 * mib * 1e3 - prediction.compute_ms - 1e-9


def test_a_row_op_costs_its_rows_at_the_per_row_cost_swept_for_its_width() -> None:
    # Scatters of rows 16 and 64 floats wide (136 and 520 bytes per row with the index): 20 and 80 ns a row.
    points = {"gather": [(0, rows * width, rows * cost, "index_add_", rows)
                         for rows in (256, 2048, 16384) for width, cost in ((136, 20e-9), (520, 80e-9))]}
    calibration = _calibration(points=points)
    assert terms_s(_batch([("gather", 0, 4096 * 136, "index_add_", 4096)]), calibration)["memory"] == (
        pytest.approx(4096 * 20e-9))
    between = terms_s(_batch([("gather", 0, 1000 * 266, "index_add_", 1000)]), calibration)["memory"]
    assert 1000 * 20e-9 < between < 1000 * 80e-9
