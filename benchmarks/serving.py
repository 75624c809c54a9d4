"""Throughput and latency of the predict path, seedserve beside its baselines,
in one run on one machine.

    .venv/bin/python -m benchmarks.serving [--seconds 10]

Servers, one at a time so they do not share the CPUs:
  1. bare Starlette with the model in process (uvicorn, one worker);
  2. vanilla Ray Serve, default settings (Python proxy);
  3. vanilla Ray Serve, HAProxy ingress + throughput-optimized (Ray's fastest);
  4. seedserve: the real `seedserve up`, the model registered through the manager,
     queries with the model's key (auth + decode + infer in the model's replica).
Every server runs the same 16->64->4 MLP on one replica with a JSON body. wrk
drives each at 1 and 16 connections. Writes benchmarks/results/serving.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import httpx

from benchmarks._model import BODY, MANIFEST, make_mlp
from benchmarks._wrk import Result, run_wrk
from seedserve.cluster.processes import Child, start_child, wait_until

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent
URL_PATH = "/models/bench-mlp/predict"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str, headers: dict[str, str]) -> bool:
    return httpx.post(url, content=BODY, headers={"Content-Type": "application/json", **headers}, timeout=10).status_code == 200


@contextmanager
def bare_starlette(logs: Path) -> Iterator[tuple[str, dict[str, str]]]:
    port = _free_port()
    child = start_child("starlette", [sys.executable, "-m", "uvicorn", "benchmarks.bare_starlette:app", "--port",
                                      str(port), "--no-access-log", "--log-level", "warning"], logs / "starlette.log")
    yield from _serving(child, f"http://127.0.0.1:{port}{URL_PATH}", {})


@contextmanager
def vanilla_serve(logs: Path, haproxy: bool) -> Iterator[tuple[str, dict[str, str]]]:
    port = _free_port()
    argv = [sys.executable, "-m", "benchmarks.vanilla_serve", "--port", str(port)] + (["--haproxy"] if haproxy else [])
    child = start_child("vanilla", argv, logs / f"vanilla-{'haproxy' if haproxy else 'default'}.log")
    yield from _serving(child, f"http://127.0.0.1:{port}{URL_PATH}", {}, timeout_s=240)


@contextmanager
def seedserve(logs: Path) -> Iterator[tuple[str, dict[str, str]]]:
    from seedserve.client import ManagerClient

    data = Path(tempfile.mkdtemp(prefix="seedserve-bench-"))
    ports = {name: _free_port() for name in ("MASTER", "MANAGER", "DB", "RAY", "DASHBOARD")}
    env = {**os.environ, **{f"SEEDSERVE_{k}_PORT": str(v) for k, v in ports.items()},
           "SEEDSERVE_DATA_DIR": str(data), "SEEDSERVE_INTERNAL_PORT_BASE": "26000"}
    child = start_child("seedserve", [str(BIN / "seedserve"), "up"], logs / "seedserve.log", env=env)
    try:
        wait_until(lambda: "seedserve is up" in child.log.read_text(), 300, "seedserve up", child)
        artifact = data / "mlp.pt"
        import torch

        torch.jit.script(make_mlp()).save(str(artifact))
        with ManagerClient(f"http://127.0.0.1:{ports['MANAGER']}", (data / "admin-token").read_text().strip()) as manager:
            key = manager.register(artifact, MANIFEST)
        url = f"http://127.0.0.1:{ports['MASTER']}{URL_PATH}"
        headers = {"Authorization": f"Bearer {key}"}
        yield from _serving(child, url, headers, stop=False)
    finally:
        child.stop(60)


def _serving(child: Child, url: str, headers: dict[str, str], timeout_s: float = 120,
             stop: bool = True) -> Iterator[tuple[str, dict[str, str]]]:
    try:
        wait_until(lambda: _answers(url, headers), timeout_s, f"{child.name} answering", child)
        yield url, headers
    finally:
        if stop:
            child.stop(60)


SERVERS: dict[str, Callable[[Path], "contextmanager[tuple[str, dict[str, str]]]"]] = {  # type: ignore[type-arg]
    "bare Starlette (model in process)": bare_starlette,
    "vanilla Ray Serve (defaults)": lambda logs: vanilla_serve(logs, haproxy=False),
    "vanilla Ray Serve (HAProxy + throughput-optimized)": lambda logs: vanilla_serve(logs, haproxy=True),
    "seedserve": seedserve,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="seedserve-bench-logs-"))
    results: dict[str, list[Result]] = {}
    for name, server in SERVERS.items():
        print(f"== {name}", flush=True)
        with server(logs) as (url, headers):
            run_wrk(url, BODY, headers, concurrency=4, seconds=3)  # warm-up
            results[name] = []
            for concurrency in args.concurrency:
                result = run_wrk(url, BODY, headers, concurrency=concurrency, seconds=args.seconds)
                print(f"   c={concurrency:<3} {result.requests_per_s:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                      f"p99 {result.p99_ms:6.2f} ms  errors {result.errors}", flush=True)
                results[name].append(result)
        time.sleep(2)
    _write(results, args)
    failed = [f"{name} c={r.concurrency}" for name, rows in results.items() for r in rows if r.errors]
    if failed:
        raise SystemExit(f"runs with errors (their req/s are not results): {', '.join(failed)}")


def _write(results: dict[str, list[Result]], args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
            "machine": platform.machine(), "seconds_per_run": args.seconds}
    (RESULTS / "serving.json").write_text(json.dumps(
        {"meta": meta, "results": {k: [asdict(r) for r in v] for k, v in results.items()}}, indent=2) + "\n")
    fastest_vanilla = {c: max(v[i].requests_per_s for k, v in results.items() if k.startswith("vanilla"))
                       for i, c in enumerate(args.concurrency)}
    lines = [f"Measured {meta['date']} on {meta['cpus']} CPUs ({meta['machine']}), wrk -t1, "
             f"{args.seconds} s per row, one replica, 16->64->4 MLP, JSON body.", "",
             "| server | connections | req/s | p50 ms | p99 ms | errors | vs fastest vanilla Ray Serve |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, rows in results.items():
        for r in rows:
            ratio = r.requests_per_s / fastest_vanilla[r.concurrency]
            lines.append(f"| {name} | {r.concurrency} | {r.requests_per_s:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
                         f"| {r.errors} | {ratio:.2f}x |")
    (RESULTS / "serving.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot(results, args.concurrency)


def _plot(results: dict[str, list[Result]], concurrency: list[int]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(results)
    for i, (name, rows) in enumerate(results.items()):
        ax.bar([j + i * width for j in range(len(rows))], [r.requests_per_s for r in rows], width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(concurrency))], [f"{c} connections" for c in concurrency])
    ax.set_ylabel("requests/s")
    ax.set_title("predict path, tiny MLP, JSON")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "serving.png", dpi=120)


if __name__ == "__main__":
    main()
