"""What the sandbox costs a handler model's queries, in one run.

    .venv/bin/python -m benchmarks.sandbox [--seconds 10]

1. The call: the same handler package (the benchmark MLP, and the CNN on a
   decoded 3x64x64 image) called in process (``runtime.Handler``, what a
   replica did before the sandbox) and through its sandboxed process
   (``SandboxedHandler``: pipe, frames, checks), at batch 1 and 16. Median
   of three passes of the median call time.
2. End to end: the real ``seedserve up`` serving the handler MLP (in its
   sandbox) beside the same MLP as TorchScript (served in the replica), wrk
   at 1 and 16 connections. The TorchScript graph is also frozen and
   optimized, so this row puts the sandbox's cost in context; the call
   table isolates it.

Writes benchmarks/results/sandbox.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._model import MLP, make_cnn, make_mlp
from benchmarks._system import seedserve_up
from benchmarks._wrk import run_wrk
from seedserve.client import ManagerClient
from seedserve.client.handler import package_handler
from seedserve.codecs import Manifest
from seedserve.runtime import load_model, run_model
from seedserve.sandbox.handler import SandboxedHandler

RESULTS = Path(__file__).resolve().parent / "results"

_SCRIPT = """
import torch

def load(weights):
    model = {network}
    model.load_state_dict(weights)
    return model.eval()

def predict(model, inputs):
    return model(torch.from_numpy(inputs["{input}"]))
"""
_NETWORKS = {
    "mlp": ("torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))", "x", (16,)),
    "cnn": ("torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2), "
            "torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2), "
            "torch.nn.Conv2d(64, 128, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), "
            "torch.nn.Flatten(), torch.nn.Linear(128, 10))", "x", (3, 64, 64)),
}


def _package(kind: str, directory: Path) -> tuple[bytes, Manifest]:
    network, name, shape = _NETWORKS[kind]
    script = directory / f"{kind}.py"
    script.write_text(_SCRIPT.format(network=network, input=name))
    path = package_handler(script, directory / f"{kind}.zip", (make_mlp if kind == "mlp" else make_cnn)())
    manifest = Manifest.model_validate({
        "name": f"handler-{kind}", "outputs": [{"name": "y"}],
        "inputs": [{"name": name, "kind": "tensor", "dtype": "float32", "shape": [-1, *shape]}],
    })
    return path.read_bytes(), manifest


def _median_call_us(call: Callable[[], Any], calls: int) -> float:
    for _ in range(min(calls, 50)):
        call()
    passes = []
    for _ in range(3):
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        passes.append(statistics.median(times) * 1e6)
    return statistics.median(passes)


def call_costs(directory: Path) -> list[dict[str, Any]]:
    rows = []
    for kind, calls in (("mlp", 2000), ("cnn", 100)):
        data, manifest = _package(kind, directory)
        shape = manifest.inputs[0].shape[1:]  # type: ignore[union-attr]
        inputs = {batch: {"x": np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)}
                  for batch in (1, 16)}
        # Sandboxed first: once this process has run torch, its OpenMP threads
        # spin after each call and take the cores the sandbox's threads need
        # (a replica serving a handler runs no torch of its own).
        sandboxed = SandboxedHandler(data, manifest)
        try:
            boxed = {b: _median_call_us(partial(run_model, sandboxed, manifest, x), calls) for b, x in inputs.items()}
        finally:
            sandboxed.close()
        plain = load_model(data, "handler")
        inside = {b: _median_call_us(partial(run_model, plain, manifest, x), calls) for b, x in inputs.items()}
        for batch in inputs:
            rows.append({"model": kind, "batch": batch, "in_process_us": round(inside[batch], 1),
                         "sandboxed_us": round(boxed[batch], 1), "added_us": round(boxed[batch] - inside[batch], 1)})
            print(rows[-1], flush=True)
    return rows


def end_to_end(directory: Path, seconds: int) -> list[dict[str, Any]]:
    import torch

    rows = []
    with seedserve_up(directory, 24000) as running, ManagerClient(running.manager_url, running.token) as manager:
        scripted = directory / "mlp.pt"
        torch.jit.script(make_mlp()).save(str(scripted))
        data, _ = _package("mlp", directory)
        (directory / "handler.zip").write_bytes(data)
        served = {
            "handler (sandboxed)": ("bench-handler", manager.register(directory / "handler.zip",
                                                                      {**MLP.manifest, "name": "bench-handler"},
                                                                      format="handler")),
            "TorchScript (in the replica)": ("bench-script", manager.register(scripted, {**MLP.manifest,
                                                                                         "name": "bench-script"})),
        }
        for label, (name, key) in served.items():
            url = f"{running.master_url}/models/{name}/predict"
            _wait(url, key)
            for connections in (1, 16):
                result = run_wrk(url, MLP.body, {"Authorization": f"Bearer {key}"}, concurrency=connections,
                                 seconds=seconds)
                rows.append({"served as": label, "connections": connections,
                             "requests_per_s": round(result.requests_per_s), "p50_ms": result.p50_ms,
                             "p99_ms": result.p99_ms, "errors": result.errors})
                print(rows[-1], flush=True)
    return rows


def _wait(url: str, key: str) -> None:
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            answer = httpx.post(url, content=MLP.body, headers={"Authorization": f"Bearer {key}"}, timeout=10)
            if answer.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} never answered")


def _markdown(calls: list[dict[str, Any]], e2e: list[dict[str, Any]], when: str) -> str:
    lines = [f"# Sandbox cost ({when}, {platform.node()}, {platform.machine()})", "",
             "One handler package called in process and through its sandboxed process (median us per call):", "",
             "| model | batch | in process | sandboxed | added |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['batch']} | {r['in_process_us']} | {r['sandboxed_us']} | {r['added_us']:+.1f} |"
              for r in calls]
    lines += ["", "End to end through `seedserve up` (wrk):", "",
              "| served as | connections | req/s | p50 ms | p99 ms | errors |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['served as']} | {r['connections']} | {r['requests_per_s']:,} | {r['p50_ms']:.2f} | "
              f"{r['p99_ms']:.2f} | {r['errors']} |" for r in e2e]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--calls-only", action="store_true",
                        help="skip the end-to-end rows and print only (benchmarks/results/ keeps the last full run)")
    args = parser.parse_args()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="seedserve-sandbox-bench-") as tmp:
        directory = Path(tmp)
        calls = call_costs(directory)
        e2e = [] if args.calls_only else end_to_end(directory, args.seconds)
    if args.calls_only:
        print(_markdown(calls, e2e, when))
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sandbox.json").write_text(json.dumps({"when": when, "calls": calls, "end_to_end": e2e}, indent=1))
    (RESULTS / "sandbox.md").write_text(_markdown(calls, e2e, when))
    print(_markdown(calls, e2e, when))


if __name__ == "__main__":
    main()
