"""What a replica reports as its measured latency is the quantity the
profiler predicts: one model call on the replica's torch threads, inputs
already decoded, outputs not yet encoded (seedserve.profiler.feedback).

The model's cost is set apart from its input: a matrix product of fixed
size, whatever the image. The input is slow to decode (a large PNG of noise,
resized to 32 x 32). So a report that counted decoding would be many times
the in-process call; one that is the call alone sits beside it. The
replica's per-query path (its CPU outside model calls), reported beside it
and priced apart by the end-to-end prediction, is where the decoding shows."""

from __future__ import annotations

import io
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seedserve.client import Client, ManagerClient
from seedserve.codecs.image import ImageInput, decode_image
from tests.conftest import System
from tests.helpers import eventually

pytestmark = pytest.mark.integration

WIDTH = 192
#: Queries sent: enough for the replica to report its per-query path (PathCost's minimum).
QUERIES = 220


class _FixedProduct(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(WIDTH, WIDTH) / WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        product = self.w @ self.w @ self.w @ self.w
        return product.sum(0, keepdim=True).expand(x.shape[0], -1) + x.mean((1, 2, 3))[:, None]


def _median_s(call: object, times: int) -> float:
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def test_the_replica_reports_the_model_call_without_decoding(system: System, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.jit.script(_FixedProduct().eval())
    artifact = tmp_path / "product.pt"
    model.save(str(artifact))
    manifest = {"name": "fixed-product", "inputs": [{"name": "image", "kind": "image", "size": [32, 32]}],
                "outputs": [{"name": "y"}]}
    noise = np.random.default_rng(0).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG", compress_level=1)
    png = buffer.getvalue()
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        key = manager.register(artifact, manifest)
    try:
        with Client(system.master_url, key, timeout=60) as client:
            eventually(lambda: client.predict("fixed-product", image=png), timeout_s=90)
            for _ in range(QUERIES):
                client.predict("fixed-product", image=png)

        def reported() -> dict[str, float]:
            with ManagerClient(system.manager_url, system.admin_token) as manager:
                seen = manager.get_model("fixed-product").measured.get("cpu-local")
            assert seen and seen["calls"] >= QUERIES and "path_ms" in seen, seen
            return seen

        measured = eventually(reported, timeout_s=60)
    finally:
        with ManagerClient(system.manager_url, system.admin_token) as manager:
            manager.delete_model("fixed-product")
    spec = ImageInput(name="image", size=(32, 32))
    decode_s = _median_s(lambda: decode_image(png, spec), 5)
    x = torch.from_numpy(decode_image(png, spec))
    threads = torch.get_num_threads()
    torch.set_num_threads(int(measured["threads"]))
    try:
        with torch.inference_mode():
            call_s = _median_s(lambda: model(x), 50)
    finally:
        torch.set_num_threads(threads)
    reported_s = measured["p50_ms"] / 1e3
    assert measured["threads"] == 1 and measured["mean_items"] == pytest.approx(1.0)
    assert decode_s > 10 * call_s, (decode_s, call_s)  # what makes the two cases far apart
    assert reported_s < decode_s / 3, (reported_s, decode_s)  # decoding is not in the report ...
    assert call_s / 2.5 < reported_s < call_s * 2.5, (reported_s, call_s)  # ... the model call is
    # The path, priced apart (QueryPath.path_s), is where decoding went.
    path_s = measured["path_ms"] / 1e3
    assert path_s > decode_s / 2 and path_s > 5 * reported_s, (path_s, decode_s, reported_s)
