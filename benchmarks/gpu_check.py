"""seedserve's model runtime on a GPU, without Ray: correctness by precision,
throughput and latency by batch size, and the GPU worker type's calibration.

    python -m benchmarks.gpu_check --device cuda [--out DIR]      # on a GPU machine
    python -m benchmarks.gpu_check --device cpu --quick            # anywhere (CI)

It builds its artifacts where it runs (the MLP and the CNN of
benchmarks/_model.py, saved as TorchScript archives, as registered), loads
them through ``seedserve.runtime`` and places them on the device
(``place_model``). Queries are decoded by the codecs from their wire form
(JSON rows, base64 PNGs) and batched by ``dispatch.merged_calls``; each
batch runs through ``run_model`` on the device and is compared with the same
batch in fp32 on the CPU:

  fp32  max |diff| <= 2e-3 x max |reference| (CUDA convolutions use TF32)
  fp16  max |diff| <= 5e-3 x max |reference|
  bf16  max |diff| <= 2e-2 x max |reference| (measured on this CPU: 3-5e-3)

With ``--device cpu`` the device is the CPU: fp32 is the reference itself,
and bf16 is checked against it with the same tolerance, so the check can
fail there too (``--tolerance-scale`` tightens every tolerance, to see it fail).
Exit status 1 when any comparison fails. Writes DIR/gpu.{json,md} (default
benchmarks/results/).

Needs torch, numpy, Pillow and pydantic (and their dependencies: pydantic-core,
annotated-types, typing-extensions); no Ray, no database. ``--wheels`` lists
the ones missing here, to carry to a machine without a package registry.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NEEDED = ("torch", "numpy", "PIL", "pydantic", "pydantic_core", "annotated_types", "typing_extensions")
TOLERANCES = {"fp32": 2e-3, "fp16": 5e-3, "bf16": 2e-2}


def missing_modules() -> list[str]:
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def _queries(kind: str, count: int) -> list[dict[str, Any]]:
    """``count`` distinct queries in their JSON wire form."""
    import base64

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1)
    if kind == "mlp":
        return [{"x": rng.standard_normal((1, 16)).round(4).tolist()} for _ in range(count)]
    queries = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, format="PNG")
        queries.append({"image": {"b64": base64.b64encode(buffer.getvalue()).decode(), "mime": "image/png"}})
    return queries


def _artifact(kind: str) -> bytes:
    import torch

    sys.path.insert(0, str(ROOT))
    from benchmarks._model import make_cnn, make_mlp

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script((make_mlp if kind == "mlp" else make_cnn)()), buffer)
    return buffer.getvalue()


def _manifest(kind: str) -> Any:
    from benchmarks._model import CNN, MLP
    from seedserve.codecs import Manifest

    return Manifest.model_validate((MLP if kind == "mlp" else CNN).manifest)


def _batch(manifest: Any, queries: list[dict[str, Any]]) -> dict[str, Any]:
    """Decode each query as a replica does, and merge them into one call's
    inputs with the replica's own decision of what shares a call (seedserve.dispatch)."""
    from seedserve import dispatch
    from seedserve.codecs import decode_inputs
    from seedserve.codecs.batching import items
    from seedserve.codecs.registry import kinds_of

    kinds = kinds_of(manifest.inputs)
    decoded = [(arrays, items(arrays, kinds)) for arrays in (decode_inputs(manifest, query) for query in queries)]
    ((_, _, inputs),) = dispatch.merged_calls(decoded, sum(count for _, count in decoded), kinds)
    return inputs


def _relative_error(got: dict[str, Any], expected: dict[str, Any]) -> float:
    import numpy as np

    worst = 0.0
    for name, reference in expected.items():
        scale = float(np.abs(reference).max()) or 1.0
        worst = max(worst, float(np.abs(np.asarray(got[name], np.float64) - reference).max()) / scale)
    return worst


def _timing(model: Any, manifest: Any, inputs: dict[str, Any], placement: Any, budget_s: float) -> dict[str, float]:
    from seedserve.runtime import run_model

    for _ in range(3):
        run_model(model, manifest, inputs, placement)
    times = []
    deadline = time.perf_counter() + budget_s
    while time.perf_counter() < deadline or len(times) < 5:
        start = time.perf_counter()
        run_model(model, manifest, inputs, placement)  # outputs come back to the host: the device has finished
        times.append(time.perf_counter() - start)
    times.sort()
    return {"p50_ms": statistics.median(times) * 1e3,
            "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))] * 1e3}


def check(device: str, batches: list[int], tolerance_scale: float, budget_s: float) -> dict[str, Any]:
    from seedserve.runtime import CPU, Placement, load_model, place_model, run_model

    precisions = ["fp32", "fp16", "bf16"] if device.startswith("cuda") else ["bf16"]
    results: dict[str, Any] = {"comparisons": [], "timings": []}
    for kind in ("mlp", "cnn"):
        manifest, artifact = _manifest(kind), _artifact(kind)
        reference_model = load_model(artifact, "torchscript")
        queries = _queries(kind, max(batches))
        for precision in precisions:
            placement = Placement(device, precision)  # type: ignore[arg-type]
            model = place_model(load_model(artifact, "torchscript"), placement)
            for batch in batches:
                inputs = _batch(manifest, queries[:batch])
                error = _relative_error(run_model(model, manifest, inputs, placement),
                                        run_model(reference_model, manifest, inputs, CPU))
                tolerance = TOLERANCES[precision] * tolerance_scale
                results["comparisons"].append({"model": kind, "precision": precision, "batch": batch,
                                               "relative_error": error, "tolerance": tolerance,
                                               "ok": error <= tolerance})
        timed = [CPU] + [Placement(device, p) for p in precisions if Placement(device, p) != CPU]  # type: ignore[arg-type]
        if device.startswith("cuda"):
            timed.insert(1, Placement(device, "fp32"))
        for placement in timed:
            model = place_model(load_model(artifact, "torchscript"), placement)
            for batch in batches:
                timing = _timing(model, manifest, _batch(manifest, queries[:batch]), placement, budget_s)
                results["timings"].append({"model": kind, "device": placement.device, "precision": placement.precision,
                                           "batch": batch, **timing, "items_per_s": batch / timing["p50_ms"] * 1e3})
    return results


def _markdown(results: dict[str, Any]) -> str:
    lines = [f"# GPU check ({results['when']}, {results['host']}, device {results['device']})", "",
             f"torch {results['torch']}, {results['device_name']}", "",
             "| model | precision | batch | max rel. error | tolerance | ok |", "|---|---|---:|---:|---:|---|"]
    lines += [f"| {c['model']} | {c['precision']} | {c['batch']} | {c['relative_error']:.2e} | {c['tolerance']:.0e} | "
              f"{'yes' if c['ok'] else '**no**'} |" for c in results["comparisons"]]
    lines += ["", "| model | device | precision | batch | p50 ms | p99 ms | items/s |",
              "|---|---|---|---:|---:|---:|---:|"]
    lines += [f"| {t['model']} | {t['device']} | {t['precision']} | {t['batch']} | {t['p50_ms']:.3f} | "
              f"{t['p99_ms']:.3f} | {t['items_per_s']:,.0f} |" for t in results["timings"]]
    if results.get("calibration"):
        lines += ["", f"Calibration of `{results['calibration']['worker_type']}` stored in "
                      f"`{results['calibration_file']}`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="batches 1 and 8, short timings (CI)")
    parser.add_argument("--tolerance-scale", type=float, default=1.0)
    parser.add_argument("--calibrate", metavar="WORKER_TYPE", help="also run seedserve calibrate's sweeps here")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--wheels", action="store_true", help="list the modules missing here and exit")
    args = parser.parse_args(argv)
    if args.wheels or missing_modules():
        print("missing:", " ".join(missing_modules()) or "nothing")
        return 0 if args.wheels else 2
    import torch

    sys.path.insert(0, str(ROOT))
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available here; run with --device cpu", file=sys.stderr)
        return 2
    batches = [1, 8] if args.quick else [1, 8, 32, 128]
    results = check(args.device, batches, args.tolerance_scale, 0.2 if args.quick else 2.0)
    results |= {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "host": platform.node(),
                "device": args.device, "torch": torch.__version__,
                "device_name": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
                else platform.processor() or "cpu"}
    if args.calibrate:
        from seedserve.profiler.calibrate import calibrate

        calibration = calibrate(args.calibrate, device=args.device)
        path = ROOT / "configs" / f"calibration-{args.calibrate}.json"
        path.write_text(calibration.model_dump_json(indent=1))
        results |= {"calibration": {"worker_type": args.calibrate, "at": str(calibration.measured_at)},
                    "calibration_file": str(path.relative_to(ROOT))}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(results, indent=1, default=str))
    (args.out / "gpu.md").write_text(_markdown(results))
    print(_markdown(results))
    failed = [c for c in results["comparisons"] if not c["ok"]]
    for c in failed:
        print(f"FAILED: {c['model']} {c['precision']} batch {c['batch']}: relative error {c['relative_error']:.2e} "
              f"> {c['tolerance']:.0e}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
