"""How to run a ``torch.export`` program (.pt2) fast: in-process call latency
of the benchmark MLP and CNN at batch 1 and 16, one thread (what a replica
with a fraction of a CPU gets), for each way of running it, beside the frozen
TorchScript that seedserve serves today:

  - eager: the nn.Module itself (reference, not an artifact);
  - torchscript frozen: ``torch.jit.optimize_for_inference(torch.jit.freeze(...))``;
  - export module(): ``torch.export.load(...).module()`` as is;
  - export + torch.compile: ``torch.compile(program.module())`` (Inductor, dynamic batch);
  - export + AOTInductor: ``torch._inductor.aoti_compile_and_package`` then ``aoti_load_package``;
  - export + torch.compile with Inductor's ``freezing`` (constant weights, oneDNN prepacking);
  - seedserve's ProgramModel (the graph called directly), and what seedserve
    serves: that graph traced, frozen and optimized for inference.

Also the one-off cost each adds before the first answer (load, compile,
first call), which a replica pays at start-up.

    .venv/bin/python -m benchmarks.export_runtime [--repeats 2000]

Writes benchmarks/results/export_runtime.{json,md}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks._model import MODELS
from seedserve._program import ProgramModel, compiled_for_inference
from seedserve.runtime import load_model

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
SHAPES = {"mlp": (16,), "cnn": (3, 64, 64)}
BATCHES = (1, 16)


def _program(model: torch.nn.Module, shape: tuple[int, ...]) -> bytes:
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (torch.randn(2, *shape),), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def _torchscript(model: torch.nn.Module) -> Callable[..., Any]:
    with warnings.catch_warnings():  # deprecated in torch 2.13; measured here as the baseline it is
        warnings.simplefilter("ignore", DeprecationWarning)
        buffer = io.BytesIO()
        torch.jit.save(torch.jit.script(model), buffer)
        loaded = torch.jit.load(io.BytesIO(buffer.getvalue()))
        return torch.jit.optimize_for_inference(torch.jit.freeze(loaded.eval()))  # type: ignore[no-any-return]


def _aoti(data: bytes) -> Callable[..., Any]:
    program = torch.export.load(io.BytesIO(data))
    with tempfile.TemporaryDirectory() as tmp:
        package = torch._inductor.aoti_compile_and_package(program, package_path=str(Path(tmp) / "m.pt2"))
        return torch._inductor.aoti_load_package(package)  # type: ignore[no-any-return]


def _variants(name: str, inputs: dict[int, torch.Tensor]) -> dict[str, Callable[[], Callable[..., Any]]]:
    model = MODELS[name]()
    data = _program(model, SHAPES[name])
    return {
        "eager nn.Module": lambda: model,
        "TorchScript frozen + optimized (today)": lambda: _torchscript(model),
        "export: program.module()": lambda: torch.export.load(io.BytesIO(data)).module(),
        "export: torch.compile(program.module())": lambda: torch.compile(
            torch.export.load(io.BytesIO(data)).module(), dynamic=True),
        "export: AOTInductor package": lambda: _aoti(data),
        "export: torch.compile, Inductor freezing": lambda: _compiled_frozen(data, SHAPES[name]),
        "export: seedserve's ProgramModel (graph called directly)": lambda: load_model(data, "export"),
        "export: traced + frozen + optimized (what seedserve serves)": lambda: _seedserve_served(data, inputs),
    }


def _compiled_frozen(data: bytes, shape: tuple[int, ...]) -> Callable[..., Any]:
    """Inductor with ``freezing`` (weights as constants, oneDNN weight prepacking on the CPU)."""
    import torch._inductor.config as inductor

    inductor.freezing = True
    try:
        module = torch.compile(torch.export.load(io.BytesIO(data)).module(), dynamic=True)
        with torch.no_grad():
            for b in BATCHES:  # compiles here, with freezing on
                module(torch.randn(b, *shape))
        return module  # type: ignore[no-any-return]
    finally:
        inductor.freezing = False


def _seedserve_served(data: bytes, inputs: dict[int, torch.Tensor]) -> Callable[..., Any]:
    """What a replica serves: seedserve's loader, then the trace, freeze and
    oneDNN passes (runtime.optimize_for_serving checks it on other batch sizes)."""
    model = load_model(data, "export")
    assert isinstance(model, ProgramModel)
    with torch.inference_mode():
        return compiled_for_inference(model, (inputs[max(BATCHES)],))


def _median_us(call: Callable[[], Any], repeats: int) -> float:
    for _ in range(max(10, repeats // 20)):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e6


def measure(name: str, repeats: int) -> list[dict[str, Any]]:
    rows = []
    reference = MODELS[name]()
    inputs = {b: torch.randn(b, *SHAPES[name]) for b in BATCHES}
    for variant, build in _variants(name, inputs).items():
        start = time.perf_counter()
        try:
            runner = build()
            with torch.inference_mode():
                for b in BATCHES:  # first call of each batch size: where torch.compile compiles
                    got = runner(inputs[b])
                    got = got[0] if isinstance(got, (list, tuple)) else got
                    torch.testing.assert_close(got, reference(inputs[b]), rtol=1e-4, atol=1e-5)
        except Exception as exc:  # a way that does not work here is a result too
            rows.append({"model": name, "variant": variant, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            continue
        ready_s = time.perf_counter() - start
        row: dict[str, Any] = {"model": name, "variant": variant, "ready_s": round(ready_s, 3)}
        with torch.inference_mode():
            for b in BATCHES:
                row[f"batch{b}_us"] = round(_median_us(lambda runner=runner, b=b: runner(inputs[b]),
                                                       repeats // (4 if b > 1 else 1)), 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [row for name in MODELS for row in measure(name, args.repeats)]
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
            "machine": platform.machine(), "torch": torch.__version__, "threads": args.threads,
            "repeats": args.repeats}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "export_runtime.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [f"Measured {meta['date']}, torch {meta['torch']}, {args.threads} thread(s) on {meta['cpus']} CPUs "
             f"({meta['machine']}); median of {args.repeats} calls at batch 1 ({args.repeats // 4} at 16) under "
             "inference_mode, after a warm-up. 'ready' is building it from the artifact's bytes (load, freeze or "
             "compile) plus its first call at each batch size: what a replica pays before its first answer.", "",
             "| model | way of running | ready s | batch 1 us | batch 16 us |", "|---|---|---:|---:|---:|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['model']} | {row['variant']} | fails: {row['error'][:120]} | | |")
        else:
            lines.append(f"| {row['model']} | {row['variant']} | {row['ready_s']:.2f} | {row['batch1_us']:,.1f} "
                         f"| {row['batch16_us']:,.1f} |")
    (RESULTS / "export_runtime.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
