"""benchmarks/gpu_check.py on the CPU, as CI runs it: the runtime's device
placement, precision and batching path, compared with fp32 (no GPU here:
the CPU stands in as the device, and bf16 is what is checked)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.gpu_check import main


def test_bf16_on_the_cpu_stays_within_the_stated_tolerance_of_fp32(tmp_path: Path) -> None:
    assert main(["--device", "cpu", "--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "gpu.json").read_text())
    comparisons = results["comparisons"]
    assert {(c["model"], c["precision"], c["batch"]) for c in comparisons} == {
        (model, "bf16", batch) for model in ("mlp", "cnn") for batch in (1, 8)}
    assert all(0 < c["relative_error"] <= c["tolerance"] for c in comparisons)  # bf16 really ran: not exact
    assert {(t["precision"], t["batch"]) for t in results["timings"] if t["model"] == "cnn"} == {
        (p, b) for p in ("fp32", "bf16") for b in (1, 8)}


def test_the_check_fails_when_the_error_exceeds_its_tolerance(tmp_path: Path) -> None:
    assert main(["--device", "cpu", "--quick", "--tolerance-scale", "1e-3", "--out", str(tmp_path)]) == 1
