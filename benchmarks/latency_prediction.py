"""Predicted vs measured latency on this machine's CPU worker, for a zoo of
models (benchmarks/_zoo.py: 66 models in 16 families, or any module given
with --zoo) at two batch sizes.

    .venv/bin/python -m benchmarks.latency_prediction [--threads 1] [--zoo MODULE]

1. Calibrate this node (seedserve.profiler.calibrate: GEMM, convolution,
   depthwise, recurrent, gather and copy sweeps; nothing from the zoo).
2. For each zoo model (benchmarks/_zoo.py) and batch size: profile it
   (one traced call), and measure its median latency as a replica runs it
   (TorchScript, inference mode, the replicas' thread count), in three
   passes over the zoo (the median of the three).
3. Score the predictors, each leave-one-family-out (a family's predictions
   use only what was fitted or measured without it):
   - seedserve's calibrated predictor, from the sweeps alone (it fits
     nothing on the zoo, so leaving a family out changes nothing);
   - the same with its terms weighted by non-negative least squares on the
     other six families (tried as a refinement; it does not help, see the table);
   - uncalibrated: 2 x ptflops MACs / the catalog's peak FLOP/s;
   - a two-parameter fit: latency = a + b x FLOPs;
   - seedserve's predictor before this node is calibrated (catalog peaks x
     default efficiency);
   - each of seedserve's two with live feedback, as the manager applies it
     once replicas report measured latency: a fixed cost per call and a
     scale on compute and memory fitted on the other families' models
     (seedserve.profiler.feedback).
Writes benchmarks/results/latency_prediction.{json,md,png}.

    .venv/bin/python -m benchmarks.latency_prediction --end-to-end [end_to_end's options]

runs benchmarks/end_to_end.py instead: the delay between query and response
predicted (seedserve.profiler.queueing) and measured through the real stack
at three rates, into benchmarks/results/end_to_end.{json,md}.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._zoo import measure_s, resnet50
from seedserve.profiler.calibrate import Calibration, calibrate
from seedserve.profiler.catalog import load_catalog
from seedserve.profiler.feedback import Sample, fit_live
from seedserve.profiler.predict import TERMS, assumed_calibration, predict_s, split_s, terms_s
from seedserve.profiler.profile import BatchProfile, profile_model

RESULTS = Path(__file__).resolve().parent / "results"
BATCHES = (1, 16)
PASSES = 3


def _spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _score(predicted: list[float], measured: list[float]) -> dict[str, float]:
    errors = [abs(p - m) / m for p, m in zip(predicted, measured, strict=True)]
    ratios = [max(p / m, m / p) for p, m in zip(predicted, measured, strict=True)]
    return {"mape": 100 * statistics.mean(errors), "within_20pct": 100 * sum(e <= 0.2 for e in errors) / len(errors),
            "spearman": _spearman(predicted, measured), "worst_ratio": max(ratios),
            "off_by_2x": sum(r > 2 for r in ratios)}


def refine(samples: list[tuple[BatchProfile, float]], calibration: Calibration) -> dict[str, float]:
    """Weights for the predictor's terms that best fit measured latencies, by
    non-negative least squares on relative error; a term no sample exercises keeps 1."""
    from scipy.optimize import nnls

    rows = [terms_s(batch, calibration) for batch, _ in samples]
    used = [t for t in TERMS if any(row[t] > 0 for row in rows)]
    a = np.array([[row[t] / seconds for t in used] for row, (_, seconds) in zip(rows, samples, strict=True)])
    weights, _ = nnls(a, np.ones(len(samples)))
    fitted = dict.fromkeys(TERMS, 1.0)
    fitted.update({t: float(w) for t, w in zip(used, weights, strict=True)})
    return fitted


def _two_parameter_lofo(rows: list[dict[str, Any]]) -> list[float]:
    """latency = a + b x FLOPs, fitted (in log error, by a grid over a) on every other family."""
    predicted = []
    for row in rows:
        train = [r for r in rows if r["family"] != row["family"]]
        best = None
        for a in (10 ** (-6 + i / 10) for i in range(50)):
            residual = [r["measured_s"] - a for r in train]
            bs = [res / max(r["flops"], 1)
                  for res, r in zip(residual, train, strict=True) if res > 0 and r["flops"] > 0]
            if not bs:
                continue
            b = statistics.median(bs)
            error = statistics.mean(abs(math.log((a + b * r["flops"]) / r["measured_s"])) for r in train)
            if best is None or error < best[0]:
                best = (error, a, b)
        assert best is not None
        predicted.append(best[1] + best[2] * row["flops"])
    return predicted


def _with_live_feedback(rows: list[dict[str, Any]], key: str, calibrated: bool) -> list[float]:
    """``key``'s predictions corrected as the manager corrects them once
    replicas report live latency (seedserve.profiler.feedback: a fixed cost
    per call and a scale on compute and memory), fitted on the measured
    latency of every model outside the held-out family."""
    fits = {family: fit_live([Sample(*r[f"{key}_split_s"], r["measured_s"]) for r in rows if r["family"] != family],
                             calibrated) for family in dict.fromkeys(r["family"] for r in rows)}
    return [r[f"{key}_split_s"][0] + fits[r["family"]].fixed_s + r[f"{key}_split_s"][1] * fits[r["family"]].scale
            for r in rows]


def main() -> None:
    if "--end-to-end" in sys.argv[1:]:
        from benchmarks import end_to_end

        end_to_end.main([a for a in sys.argv[1:] if a != "--end-to-end"])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--end-to-end", action="store_true", help="run benchmarks/end_to_end.py instead (see above)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (replicas run with 1)")
    parser.add_argument("--zoo", default="benchmarks._zoo",
                        help="module with a zoo() returning benchmarks._zoo.Entry-like objects (family, name, "
                        "module, make(batch) -> inputs): a zoo kept outside the project is scored by the same code")
    args = parser.parse_args()
    zoo = importlib.import_module(args.zoo).zoo
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    calibration = calibrate("cpu-local")
    calibration_s = time.perf_counter() - start
    peak = load_catalog().get("cpu-local").peak_fp32 * args.threads / 2  # the catalog's peak is for both cores
    uncalibrated = assumed_calibration(load_catalog().get("cpu-local"), load_catalog())
    rows, profiles, runs = [], [], []
    for entry in zoo():
        scripted = torch.jit.script(entry.module)
        started = time.perf_counter()
        profile = profile_model(scripted, entry.make, lambda m, a: m(*a), BATCHES)
        profile_s = time.perf_counter() - started
        for batch in BATCHES:
            at = profile.at(batch)
            profiles.append(at)
            runs.append((scripted, entry.make(batch)))
            rows.append({"family": entry.family, "model": entry.name, "batch": batch, "flops": at.flops,
                         "ptflops_flops": 2 * (at.ptflops_macs or 0), "roofline_s": predict_s(at, calibration)[0],
                         "roofline_split_s": split_s(at, calibration),
                         "profile_s": profile_s, "catalog_s": predict_s(at, uncalibrated)[0],
                         "catalog_split_s": split_s(at, uncalibrated),
                         "uncalibrated_s": max(2 * (at.ptflops_macs or 0), 1) / peak})
    # Each model is measured in every pass over the zoo, and its latency is the
    # median of its passes: a burst of load from this shared host's neighbours
    # then moves one pass, not the result.
    passes = [[measure_s(scripted, inputs) for scripted, inputs in runs] for _ in range(PASSES)]
    for i, row in enumerate(rows):
        row["measured_passes_s"] = [times[i] for times in passes]
        row["measured_s"] = statistics.median(row["measured_passes_s"])
        print(f"{row['family']:12} {row['model']:26} b={row['batch']:<3} measured {row['measured_s'] * 1e3:8.3f} ms  "
              f"predicted {row['roofline_s'] * 1e3:8.3f} ms", flush=True)
    big = torch.jit.script(resnet50())
    started = time.perf_counter()
    big_profile = profile_model(big, lambda n: (torch.randn(n, 3, 224, 224),), lambda m, a: m(*a), (1, 8))
    resnet = {"seconds": time.perf_counter() - started, "parameters": big_profile.parameters,
              "flops_batch_1": big_profile.at(1).flops}
    print(f"profiled ResNet-50 in {resnet['seconds']:.1f} s", flush=True)
    for row, fit in zip(rows, _two_parameter_lofo(rows), strict=True):
        row["two_parameter_s"] = fit
    weights_without: dict[str, dict[str, float]] = {}
    for row, at in zip(rows, profiles, strict=True):
        family = row["family"]
        if family not in weights_without:  # refit without the held-out family
            weights_without[family] = refine([(a, r["measured_s"]) for a, r in zip(profiles, rows, strict=True)
                                              if r["family"] != family], calibration)
        row["refined_s"] = predict_s(at, calibration, weights_without[family])[0]
    for key, calibrated in (("roofline", True), ("catalog", False)):
        for row, scaled in zip(rows, _with_live_feedback(rows, key, calibrated), strict=True):
            row[f"{key}_live_s"] = scaled
    all_weights = refine([(a, r["measured_s"]) for a, r in zip(profiles, rows, strict=True)], calibration)
    measured = [r["measured_s"] for r in rows]
    scores = {name: _score([r[f"{key}_s"] for r in rows], measured) for name, key in
              (("calibrated sweeps (seedserve)", "roofline"),
               ("calibrated sweeps + terms refitted per held-out family", "refined"),
               ("uncalibrated 2*MACs/peak", "uncalibrated"),
               ("two-parameter fit a + b*FLOPs", "two_parameter"),
               ("calibrated sweeps + live feedback from the other families", "roofline_live"),
               ("catalog peaks, uncalibrated (before `seedserve calibrate`)", "catalog"),
               ("catalog peaks + live feedback from the other families", "catalog_live"))}
    per_family = {family: _score([r["roofline_s"] for r in rows if r["family"] == family],
                                 [r["measured_s"] for r in rows if r["family"] == family])
                  for family in dict.fromkeys(r["family"] for r in rows)}
    _write(rows, scores, per_family, {**calibration.model_dump(mode="json", exclude={"points"}),
                                      "weights_refitted_on_all_families": all_weights}, calibration_s, resnet, args)


def _stem(args: argparse.Namespace) -> str:
    """Results of the project's zoo as ``latency_prediction.*``; of another as ``latency_prediction-<module>.*``."""
    return "latency_prediction" if args.zoo == "benchmarks._zoo" else f"latency_prediction-{args.zoo.replace('.', '_')}"


def _write(rows: list[dict[str, Any]], scores: dict[str, dict[str, float]], per_family: dict[str, dict[str, float]],
           calibration: dict[str, Any], calibration_s: float, resnet: dict[str, float],
           args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (RESULTS / f"{_stem(args)}.json").write_text(json.dumps(
        {"date": date, "threads": args.threads, "calibration": calibration, "calibration_s": calibration_s,
         "resnet50_profile": resnet,
         "scores": scores, "per_family": per_family, "rows": rows}, indent=2, default=str) + "\n")
    families = len({r["family"] for r in rows})
    lines = [f"Measured {date}: {len(rows) // len(BATCHES)} models in {families} families of `{args.zoo}` "
             f"x batch {BATCHES}, "
             f"{args.threads} torch thread(s) (as replicas run), TorchScript in inference mode, "
             f"median of 9 timings in each of "
             f"{PASSES} passes over the zoo, median of the passes. "
             f"Calibration took {calibration_s:.0f} s. Targets: MAPE <= 15 %, >= 80 % within 20 %, "
             "Spearman >= 0.95, none off by more than 2x.", "",
             "| predictor (leave-one-family-out) | MAPE | within 20 % | Spearman | worst ratio | off by > 2x |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in scores.items():
        lines.append(f"| {name} | {s['mape']:.1f} % | {s['within_20pct']:.0f} % | {s['spearman']:.3f} "
                     f"| {s['worst_ratio']:.2f}x | {s['off_by_2x']:.0f} |")
    lines += ["", "| family (seedserve's predictor) | MAPE | within 20 % | worst ratio |", "|---|---:|---:|---:|"]
    for family, s in per_family.items():
        lines.append(f"| {family} | {s['mape']:.1f} % | {s['within_20pct']:.0f} % | {s['worst_ratio']:.2f}x |")
    worst = sorted(rows, key=lambda r: -max(r["roofline_s"] / r["measured_s"], r["measured_s"] / r["roofline_s"]))
    lines += ["", "| worst five (seedserve's predictor) | batch | measured ms | predicted ms | ratio |",
              "|---|---:|---:|---:|---:|"]
    for r in worst[:5]:
        lines.append(f"| {r['model']} | {r['batch']} | {r['measured_s'] * 1e3:.3f} | {r['roofline_s'] * 1e3:.3f} "
                     f"| {r['roofline_s'] / r['measured_s']:.2f}x |")
    slowest = max(r["profile_s"] for r in rows)
    lines += ["", f"Profiling (trace at batch 1 and 16 plus the ptflops count) took at most {slowest:.2f} s per zoo "
              f"model; a ResNet-50-sized model ({resnet['parameters'] / 1e6:.1f} M parameters, "
              f"{resnet['flops_batch_1'] / 1e9:.1f} GFLOPs at batch 1) took {resnet['seconds']:.1f} s (batch 1 and 8)."]
    (RESULTS / f"{_stem(args)}.md").write_text("\n".join(lines) + "\n")
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
        ax.scatter(*zip(*pts, strict=True), label=family, s=18)
    low = min(min(r["measured_s"], r["roofline_s"]) for r in rows) * 1e3 / 1.5
    high = max(max(r["measured_s"], r["roofline_s"]) for r in rows) * 1e3 * 1.5
    ax.plot([low, high], [low, high], "k-", lw=0.8)
    ax.plot([low, high], [low * 1.2, high * 1.2], "k:", lw=0.6)
    ax.plot([low, high], [low / 1.2, high / 1.2], "k:", lw=0.6)
    ax.set(xscale="log", yscale="log", xlabel="measured median latency (ms)", ylabel="predicted (ms)",
           title="seedserve's latency prediction vs measured, this CPU")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{_stem(args)}.png", dpi=120)


if __name__ == "__main__":
    main()
