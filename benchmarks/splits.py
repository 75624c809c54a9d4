"""Threads per call against calls at once (issue 19, part 1): what a replica
that reserves 2 CPUs measures at warm-up, for the benchmark's models.

    .venv/bin/python -m benchmarks.splits [--repeats 5] [--cpus 2]

For the MLP and the CNN of benchmarks._model at batch 1, 8 and 16, each
split of the CPUs (seedserve.batch_plan.splits) is measured as warm-up does
(seedserve.runtime.items_per_second: the calls started together, each on a
thread of its own), ``--repeats`` times; the table gives the median items
per second and the split seedserve.batch_plan.parallelism picks from the
medians. In process, eager models (a replica serves the optimized graph).
Writes benchmarks/results/splits.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import torch

from benchmarks._model import make_cnn, make_mlp
from seedserve import batch_plan
from seedserve.codecs import Decoded, Manifest, sample_inputs
from seedserve.runtime import items_per_second, torch_threads

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = {
    "MLP 16-64-4": (make_mlp, {"name": "mlp", "inputs": [{"name": "x", "shape": [-1, 16]}],
                               "outputs": [{"name": "y"}]}),
    "CNN 4-conv 64x64": (make_cnn, {"name": "cnn", "inputs": [{"name": "x", "shape": [-1, 3, 64, 64]}],
                                    "outputs": [{"name": "y"}]}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    splits = batch_plan.splits(args.cpus)
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPUs ({platform.machine()}), "
        f"torch {torch.__version__}; {args.cpus} reserved CPUs, median of {args.repeats}; items per second.", "",
        "| model | batch | " + " | ".join(f"{t} thread(s) x {k} call(s)" for t, k in splits) + " | chosen |",
        "|---|---:|" + "---:|" * len(splits) + "---|",
    ]
    before = torch_threads()
    for label, (make, spec) in MODELS.items():
        model, manifest = make(), Manifest.model_validate(spec)
        for batch in (1, 8, 16):
            arrays = sample_inputs(manifest, batch)
            calls = max(3, int(0.05 / max(1e-6, _one_call(model, manifest, arrays))))
            rates = {split: statistics.median(
                items_per_second(model, manifest, arrays, batch, *split, calls=calls) for _ in range(args.repeats)
            ) for split in splits}
            chosen = batch_plan.parallelism(args.cpus, rates)
            lines.append(f"| {label} | {batch} | " + " | ".join(f"{rates[s]:,.0f}" for s in splits)
                         + f" | {chosen.threads} x {chosen.flights} |")
            print(lines[-1], flush=True)
    torch_threads(before)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "splits.md").write_text("\n".join(lines) + "\n")


def _one_call(model: torch.nn.Module, manifest: Manifest, arrays: Mapping[str, Decoded]) -> float:
    return 1.0 / items_per_second(model, manifest, arrays, 1, torch_threads(), 1, calls=3)


if __name__ == "__main__":
    main()
