"""Predicted vs measured delay between query and response, through the real stack.

    .venv/bin/python -m benchmarks.end_to_end [--seconds 15]
    (or .venv/bin/python -m benchmarks.latency_prediction --end-to-end)

seedserve.profiler.queueing predicts a query's p50 and p99 delay at a request
rate from the predicted model call at batch 1 and the replica's batch size,
the replica's path per query (``path_s``) and a fixed latency (``fixed_s``).
This checks it on this node, in one run:

1. Calibrate the latency model in process (seedserve.profiler.calibrate, one
   torch thread, as replicas run), before anything else runs.
2. Profile each model and predict its call at batch 1 and 16; measure its
   decode + encode cost in process on its own query body, with seedserve's
   codecs (JSON parse, decode, encode, the response's rendering).
3. ``seedserve up`` (benchmarks/_system.py), every model registered through
   the SDK with one fixed replica (scaling min = max = 1).
4. The node's path terms, on a probe model that is not scored (a 4 -> 4
   linear layer on a row of 4 floats): ``path_s`` from its throughput under
   wrk at 16 connections less its call share there (the replica's own call
   times and batch sizes, from its statistics endpoint), less the probe's
   own decode + encode; ``fixed_s`` from its lone query's median latency at
   40 queries/s (open loop) less its replica-measured call and path; the
   node's noise (``QueryPath.noise_s``) from the spread of those lone
   latencies about their median. The probe's replica-measured calls (lone
   and under wrk) are also the live feedback (seedserve.profiler.feedback,
   as the manager applies replicas' reports) that corrects the calibration
   for every scored model: a replica's call is slower than the sweeps' hot
   loop (its caches are shared with the serving path). Each model's
   ``path_s`` is the node's plus its own decode + encode.
5. Per scored model, its predicted capacity (queueing.saturation_rps), and
   at 10 %, 50 % and 85 % of it the predicted p50 and p99
   (queueing.QueryPath.delay), all written down before anything is
   measured; then each rate's measurement by the open-loop generator
   (benchmarks/_open_loop.py: Poisson arrivals, latency from each request's
   scheduled send time), after a warm-up at the same rate.

Nothing is fitted on the scored models. Writes benchmarks/results/end_to_end.{json,md}.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import io
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from benchmarks._model import CNN, MLP, make_cnn, make_mlp
from benchmarks._open_loop import run_open_loop
from benchmarks._system import seedserve_up
from benchmarks._wrk import run_wrk
from seedserve.profiler.calibrate import Calibration, median_s

RESULTS = Path(__file__).resolve().parent / "results"
FRACTIONS = (0.10, 0.50, 0.85)
TARGET = 0.25
_ONE_REPLICA = {"min_replicas": 1, "max_replicas": 1, "num_cpus": 0.1}


class BagOfBytes(torch.nn.Module):
    """examples/text_classifier.py's model: byte tokens -> mean embedding -> 2 classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = torch.nn.Embedding(257, 16, padding_idx=0)
        self.head = torch.nn.Linear(16, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens > 0).unsqueeze(-1).float()
        pooled = (self.embedding(tokens) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled)


class FrameEnergy(torch.nn.Module):
    """examples/audio_classifier.py's model: log-energy of 50 frames of 1 s at 16 kHz -> 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = torch.nn.Linear(50, 3)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        frames = audio[:, :16000].reshape(audio.shape[0], 50, 320)
        return self.head(torch.log1p(frames.pow(2).mean(dim=2)))


def _wav() -> str:
    import soundfile as sf

    t = np.arange(44100) / 44100.0
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 440 * t), 44100, format="WAV", subtype="PCM_16")  # resampled to 16 kHz
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    make: Callable[[], torch.nn.Module]
    body: str
    manifest: dict[str, Any]

    @property
    def path(self) -> str:
        return f"/models/{self.manifest['name']}/predict"


def _cases() -> list[Case]:
    probe = Case("probe", "tensor (4 floats)", lambda: torch.nn.Linear(4, 4).eval(), '{"x": [[0.1,0.2,0.3,0.4]]}',
                 {"name": "e2e-probe", "inputs": [{"name": "x", "kind": "tensor", "dtype": "float32",
                                                   "shape": [-1, 4]}],
                  "outputs": [{"name": "y"}], "scaling": _ONE_REPLICA})
    text = Case("text", "text (utf8 bytes, 64 tokens)", lambda: BagOfBytes().eval(),
                json.dumps({"review": ["Wonderful film, though a little long; the cast is superb."]}),
                {"name": "e2e-text", "inputs": [{"name": "review", "kind": "text", "tokenizer": "utf8_bytes",
                                                 "max_tokens": 64, "max_length": 2000}],
                 "outputs": [{"name": "logits"}], "scaling": _ONE_REPLICA})
    audio = Case("audio", "audio (1 s WAV 44.1 kHz -> 16 kHz)", lambda: FrameEnergy().eval(),
                 json.dumps({"audio": {"b64": _wav(), "mime": "audio/wav"}}),
                 {"name": "e2e-audio", "inputs": [{"name": "audio", "kind": "audio", "sample_rate": 16000,
                                                   "length_s": 1.0}],
                  "outputs": [{"name": "logits"}], "scaling": _ONE_REPLICA})
    return [probe,
            Case("mlp", "tensor (16 floats), MLP 16-64-4", make_mlp, MLP.body, {**MLP.manifest, "name": "e2e-mlp"}),
            Case("cnn", "image (64x64 PNG, base64 JSON), CNN ~83 MFLOPs", make_cnn, CNN.body,
                 {**CNN.manifest, "name": "e2e-cnn"}),
            text, audio]


def _median_s(call: Callable[[], Any]) -> float:
    """As the calibration times a call (seedserve.profiler.calibrate.median_s), after warm-up calls."""
    for _ in range(3):
        call()
    return median_s(call, repeats=9, budget_s=0.5)


def _in_process(case: Case, workdir: Path, calibration: Calibration, batch_size: int) -> dict[str, Any]:
    """What is known before the system runs: the artifact, the profile and predicted
    calls, the decode + encode cost of its body, and (for the probe's path terms
    and as a diagnosis, never for a prediction of a scored model) the call as
    the replica serves it, measured here."""
    from starlette.responses import JSONResponse

    from seedserve.codecs import decode_inputs, parse_manifest, sample_inputs
    from seedserve.codecs.outputs import encode_outputs
    from seedserve.deployments._query import parse_json
    from seedserve.profiler.predict import predict_s
    from seedserve.profiler.profile import profile_manifest_model
    from seedserve.runtime import load_served_model, optimize_for_serving, run_model

    manifest = parse_manifest(case.manifest)
    artifact = workdir / f"{case.name}.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(case.make()).save(str(artifact))
    served = load_served_model(artifact.read_bytes(), "torchscript", manifest)
    profile = profile_manifest_model(served, manifest, (1, batch_size))
    uncorrected = {b: predict_s(profile.at(b), calibration)[0] for b in (1, batch_size)}
    served, how = optimize_for_serving(served, manifest, [sample_inputs(manifest), sample_inputs(manifest, batch_size)])
    body = case.body.encode()
    decoded = decode_inputs(manifest, parse_json(body))
    outputs = run_model(served, manifest, decoded)

    def codec() -> None:  # what the replica does per query besides the call, on its event loop
        decode_inputs(manifest, parse_json(body))
        JSONResponse(encode_outputs(manifest, outputs))

    codec_s = _median_s(codec)
    measured = {b: _median_s(lambda b=b: run_model(served, manifest, sample_inputs(manifest, b)))  # type: ignore[misc]
                for b in (1, batch_size)}
    return {"artifact": artifact, "profile": profile, "uncorrected_call_s": uncorrected, "codec_s": codec_s,
            "measured_call_s": measured, "served_as": how, "flops_batch_1": profile.at(1).flops}


def _stats(base: str, case: Case, key: str) -> tuple[int, int, float]:
    """(queries, calls, seconds in calls) the replica has counted."""
    answer = httpx.get(f"{base}/v2/models/{case.manifest['name']}/stats",
                       headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
    stats = answer["model_stats"][0]
    return (int(stats["inference_count"]), int(stats["execution_count"]),
            float(stats["inference_stats"]["compute_infer"]["ns"]) / 1e9)


def _delta(before: tuple[int, int, float], after: tuple[int, int, float]) -> dict[str, float]:
    queries, calls, seconds = (a - b for a, b in zip(after, before, strict=True))
    return {"queries": queries, "calls": calls, "mean_batch": queries / max(calls, 1),
            "mean_call_ms": 1e3 * seconds / max(calls, 1)}


def _wait_answering(base: str, case: Case, key: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            response = httpx.post(base + case.path, content=case.body, timeout=10,
                                  headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
            if response.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{case.name} did not answer within {timeout_s:g} s")


LONE_RPS = 40


def _path_terms(base: str, probe: Case, key: str, known: dict[str, Any],
                calibration: Calibration) -> tuple[dict[str, Any], Calibration]:
    """The node's path terms from the probe (see the module's docstring), and
    the calibration with live feedback from the probe's replica alone: its
    measured calls, lone and under wrk, against their predictions, fitted
    as the manager fits replicas' reports (seedserve.profiler.feedback)."""
    from seedserve.profiler.feedback import Sample, fit_live
    from seedserve.profiler.predict import split_s

    auth = {"Authorization": f"Bearer {key}"}
    url = base + probe.path
    run_open_loop(url, probe.body.encode(), auth, rate=LONE_RPS, seconds=2, seed=99)  # warm-up
    before = _stats(base, probe, key)
    lone = run_open_loop(url, probe.body.encode(), auth, rate=LONE_RPS, seconds=10, seed=98)
    alone = _delta(before, _stats(base, probe, key))
    run_wrk(url, probe.body, auth, concurrency=16, seconds=2)  # warm-up
    before = _stats(base, probe, key)
    busy = run_wrk(url, probe.body, auth, concurrency=16, seconds=6)
    seen = _delta(before, _stats(base, probe, key))
    call_share_s = seen["mean_call_ms"] / 1e3 / max(seen["mean_batch"], 1.0)
    loop_s = 1 / busy.requests_per_s - call_share_s  # the probe's path, its own decode + encode included
    node_path_s = loop_s - known["codec_s"]
    profile = known["profile"]
    live = fit_live([Sample(*split_s(profile.at(max(1, round(d["mean_batch"]))), calibration), d["mean_call_ms"] / 1e3)
                     for d in (alone, seen)])
    corrected = calibration.model_copy(update={"live_fixed_s": live.fixed_s, "live_scale": live.scale,
                                               "live_models": 1})
    fixed_raw_s = lone.p50_ms / 1e3 - alone["mean_call_ms"] / 1e3 - loop_s
    median = lone.p50_ms / 1e3
    noise = tuple(ms / 1e3 - median for ms in lone.latencies_ms)
    return {"lone_rps": LONE_RPS, "lone_p50_ms": lone.p50_ms, "lone_p99_ms": lone.p99_ms,
            "lone_late_p99_ms": lone.late_p99_ms, "lone_replica": alone, "wrk_rps": busy.requests_per_s,
            "wrk_p50_ms": busy.p50_ms, "wrk_errors": busy.errors, "wrk_mean_batch": seen["mean_batch"],
            "wrk_mean_call_ms": seen["mean_call_ms"], "probe_path_s": loop_s, "node_path_s": node_path_s,
            "probe_codec_s": known["codec_s"], "live_fixed_s": live.fixed_s, "live_scale": live.scale,
            "fixed_raw_s": fixed_raw_s, "fixed_s": max(0.0, fixed_raw_s), "noise_s": noise}, corrected


def _predictions(case: Case, known: dict[str, Any], terms: dict[str, Any], batch_size: int,
                 calibration: Calibration) -> dict[str, Any]:
    from seedserve.codecs.schema import Batching
    from seedserve.profiler.predict import predict_s
    from seedserve.profiler.queueing import QueryPath, call_times, policy_of, saturation_rps

    predicted = {b: predict_s(known["profile"].at(b), calibration)[0] for b in (1, batch_size)}
    known["predicted_call_s"] = predicted
    call = call_times(predicted)
    # The replica's own policy for the manifest (a size and wait it chooses where the manifest leaves them).
    policy = dataclasses.replace(policy_of(Batching.model_validate(case.manifest.get("batching", {}))),
                                 batch_size=batch_size)
    path = QueryPath(path_s=terms["node_path_s"] + known["codec_s"], fixed_s=terms["fixed_s"], queries=20_000,
                     noise_s=terms["noise_s"])
    capacity = saturation_rps(call, path.path_s, policy)
    cells = []
    for fraction in FRACTIONS:
        rate = fraction * capacity
        answer = path.delay(call, rate, policy)
        cells.append({"fraction": fraction, "rate": rate, "predicted_p50_ms": answer.p50_s * 1e3,
                      "predicted_p99_ms": answer.p99_s * 1e3, "predicted_mean_ms": answer.mean_s * 1e3,
                      "predicted_utilization": answer.utilization, "predicted_mean_batch": answer.mean_batch})
    return {"path_s": path.path_s, "fixed_s": path.fixed_s, "policy": {"batch_size": policy.batch_size,
            "max_wait_s": policy.max_wait_s}, "capacity_rps": capacity, "cells": cells}


def _measure(base: str, case: Case, key: str, cell: dict[str, Any], seconds: float, seed: int) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    url = base + case.path
    body = case.body.encode()
    run_open_loop(url, body, auth, rate=cell["rate"], seconds=3, seed=seed + 1000)  # warm-up at the same rate
    before = _stats(base, case, key)
    result = run_open_loop(url, body, auth, rate=cell["rate"], seconds=seconds, seed=seed)
    cell["replica"] = _delta(before, _stats(base, case, key))
    cell["measured"] = result.as_dict()
    cell["measured_p50_ms"], cell["measured_p99_ms"] = result.p50_ms, result.p99_ms
    cell["error_p50_pct"] = 100 * (cell["predicted_p50_ms"] - result.p50_ms) / result.p50_ms
    cell["error_p99_pct"] = 100 * (cell["predicted_p99_ms"] - result.p99_ms) / result.p99_ms
    print(f"   {case.name:6} {cell['fraction']:4.0%} {cell['rate']:8.1f}/s  p50 {cell['predicted_p50_ms']:7.2f} pred "
          f"{result.p50_ms:7.2f} meas ({cell['error_p50_pct']:+5.0f} %)  p99 {cell['predicted_p99_ms']:7.2f} pred "
          f"{result.p99_ms:7.2f} meas ({cell['error_p99_pct']:+5.0f} %)  achieved {result.achieved_rps:7.1f}/s  "
          f"late p99 {result.late_p99_ms:.2f} ms  errors {result.errors}  batch {cell['replica']['mean_batch']:.2f}",
          flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15, help="measured seconds per cell (after 3 s of warm-up)")
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn", "text", "audio"])
    parser.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS))
    parser.add_argument("--out", default="end_to_end", help="results file stem in benchmarks/results/")
    parser.add_argument("--quick-calibration", action="store_true", help="every fourth sweep point (development only)")
    args = parser.parse_args(argv)
    from seedserve import dispatch
    from seedserve.client import ManagerClient
    from seedserve.profiler.calibrate import calibrate

    torch.set_num_threads(1)
    started = time.perf_counter()
    calibration = calibrate("cpu-local", quick=args.quick_calibration)
    calibration_s = time.perf_counter() - started
    print(f"calibrated in {calibration_s:.0f} s", flush=True)
    cases = [c for c in _cases() if c.name == "probe" or c.name in args.models]
    workdir = Path(tempfile.mkdtemp(prefix="seedserve-e2e-"))
    batch_size = dispatch.batch_size(None, None)  # every model here leaves the size to seedserve or sets 16
    known = {c.name: _in_process(c, workdir, calibration, batch_size) for c in cases}
    for name, k in known.items():
        pred = k["uncorrected_call_s"]
        print(f"   {name:6} call predicted {pred[1] * 1e3:.3f} / {pred[batch_size] * 1e3:.3f} ms (b=1/{batch_size}), "
              f"measured here {k['measured_call_s'][1] * 1e3:.3f} / {k['measured_call_s'][batch_size] * 1e3:.3f} ms; "
              f"decode + encode {k['codec_s'] * 1e3:.3f} ms",
              flush=True)
    logs = Path(tempfile.mkdtemp(prefix="seedserve-e2e-logs-"))
    report: dict[str, Any] = {}
    with seedserve_up(logs, port_base=28000, env={"SEEDSERVE_AUTO_CALIBRATE": "false"}) as running:
        keys = {}
        with ManagerClient(running.manager_url, running.token) as manager, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for case in cases:
                keys[case.name] = manager.register(known[case.name]["artifact"], case.manifest)
        for case in cases:
            _wait_answering(running.master_url, case, keys[case.name])
        probe = next(c for c in cases if c.name == "probe")
        terms, corrected = _path_terms(running.master_url, probe, keys["probe"], known["probe"], calibration)
        print("path terms:", {k: v for k, v in terms.items() if k != "noise_s"}, flush=True)
        scored = [c for c in cases if c.name != "probe"]
        predictions = {}
        for c in scored:  # every prediction before any measurement
            predictions[c.name] = _predictions(c, known[c.name], terms, batch_size, corrected)
            pred = known[c.name]["predicted_call_s"]
            print(f"   {c.name:6} call predicted with the probe's live feedback {pred[1] * 1e3:.3f} / "
                  f"{pred[batch_size] * 1e3:.3f} ms; capacity {predictions[c.name]['capacity_rps']:.0f}/s", flush=True)
            predictions[c.name]["cells"] = [cell for cell in predictions[c.name]["cells"]
                                            if cell["fraction"] in args.fractions]
        for i, case in enumerate(scored):
            for j, cell in enumerate(predictions[case.name]["cells"]):
                _measure(running.master_url, case, keys[case.name], cell, args.seconds, seed=10 * i + j)
        terms["noise_s"] = [round(x, 6) for x in terms["noise_s"]]
        report = {"terms": terms, "models": {c.name: {"kind": c.kind, **{k: v for k, v in known[c.name].items()
                                                                          if k not in ("artifact", "profile")},
                                                      **predictions[c.name]} for c in scored}}
    _write(report, calibration, calibration_s, args)


def _pooled(report: dict[str, Any]) -> dict[str, float]:
    errors = [abs(cell[f"error_{q}_pct"]) for m in report["models"].values() for cell in m["cells"]
              for q in ("p50", "p99")]
    p50 = [abs(cell["error_p50_pct"]) for m in report["models"].values() for cell in m["cells"]]
    p99 = [abs(cell["error_p99_pct"]) for m in report["models"].values() for cell in m["cells"]]

    def share(values: list[float]) -> float:
        return 100 * sum(e <= 100 * TARGET for e in values) / max(len(values), 1)

    return {"within_25pct": share(errors), "p50_within_25pct": share(p50), "p99_within_25pct": share(p99),
            "cells": len(p50), "median_abs_error_pct": statistics.median(errors) if errors else float("nan")}


def _write(report: dict[str, Any], calibration: Calibration, calibration_s: float, args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    machine = f"{os.cpu_count()} CPUs ({platform.machine()}, {platform.processor() or 'unknown'})"
    pooled = _pooled(report)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(
        {"date": date, "machine": machine, "seconds_per_cell": args.seconds, "calibration_s": calibration_s,
         "calibration": calibration.model_dump(mode="json", exclude={"points"}), "pooled": pooled, **report},
        indent=2, default=str) + "\n")
    terms = report["terms"]
    lines = [f"Measured {date} on {machine}, one run: the latency model calibrated in process "
             f"({calibration_s:.0f} s, 1 torch thread), then the real `seedserve up` (HAProxy ingress), "
             "each model on one fixed replica. Node terms from the unscored probe (4 -> 4 linear): "
             f"`path_s` {terms['node_path_s'] * 1e3:.3f} ms + each model's decode + encode, `fixed_s` "
             f"{terms['fixed_s'] * 1e3:.3f} ms, noise: the probe's lone latencies about their median (alone: "
             f"p50 {terms['lone_p50_ms']:.2f} ms, p99 {terms['lone_p99_ms']:.2f} ms at {terms['lone_rps']}/s; "
             f"wrk c=16: "
             f"{terms['wrk_rps']:,.0f} req/s, batches of {terms['wrk_mean_batch']:.1f}); live feedback from the "
             f"probe's replica: {terms['live_fixed_s'] * 1e3:+.3f} ms per call, variable x{terms['live_scale']:.2f}. "
             "Open-loop Poisson load, "
             f"latency from each request's scheduled send time, {args.seconds:g} s per cell after 3 s of warm-up. "
             f"Target: p50 and p99 within +-25 %.", "",
             "| model | input | rate /s (of capacity) | p50 pred ms | p50 meas ms | p50 err | p99 pred ms "
             "| p99 meas ms | p99 err | achieved /s | send late p99 ms | errors | batch pred / replica "
             "| call ms replica |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in report["models"].items():
        for cell in m["cells"]:
            r = cell["measured"]
            lines.append(
                f"| {name} | {m['kind']} | {cell['rate']:,.0f} ({cell['fraction']:.0%}) "
                f"| {cell['predicted_p50_ms']:.2f} | {r['p50_ms']:.2f} | {cell['error_p50_pct']:+.0f} % "
                f"| {cell['predicted_p99_ms']:.2f} | {r['p99_ms']:.2f} | {cell['error_p99_pct']:+.0f} % "
                f"| {r['achieved_rps']:,.0f} | {r['late_p99_ms']:.2f} | {r['errors']} "
                f"| {cell['predicted_mean_batch']:.2f} / {cell['replica']['mean_batch']:.2f} "
                f"| {cell['replica']['mean_call_ms']:.3f} |")
    lines += ["", "| model | call pred ms b=1 / 16 (sweeps alone) | with the probe's feedback "
              "| measured in process | decode + encode ms | path_s ms | predicted capacity /s |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m in report["models"].items():
        pred, meas, raw = m["predicted_call_s"], m["measured_call_s"], m["uncorrected_call_s"]
        b = max(int(k) for k in pred)
        lines.append(f"| {name} | {raw[1] * 1e3:.3f} / {raw[b] * 1e3:.3f} "
                     f"| {pred[1] * 1e3:.3f} / {pred[b] * 1e3:.3f} | {meas[1] * 1e3:.3f} / "
                     f"{meas[b] * 1e3:.3f} | {m['codec_s'] * 1e3:.3f} | {m['path_s'] * 1e3:.3f} "
                     f"| {m['capacity_rps']:,.0f} |")
    lines += ["", f"Pooled: {pooled['within_25pct']:.0f} % of {2 * pooled['cells']} percentiles within +-25 % "
              f"(p50 {pooled['p50_within_25pct']:.0f} %, p99 {pooled['p99_within_25pct']:.0f} %), median |error| "
              f"{pooled['median_abs_error_pct']:.0f} %."]
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
