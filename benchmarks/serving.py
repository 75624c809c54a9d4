"""Throughput and latency of the predict path, seedserve beside its baselines,
in one run on one machine.

    .venv/bin/python -m benchmarks.serving [--seconds 10]

Servers, one at a time so they do not share the CPUs:
  1. bare Starlette with the model in process (uvicorn, one worker), as written;
  1b. the same, running the frozen + optimized TorchScript graph seedserve serves;
  2. vanilla Ray Serve, default settings (Python proxy);
  3. vanilla Ray Serve, HAProxy ingress + throughput-optimized (Ray's fastest);
  4. seedserve: the real `seedserve up`, the model registered through the manager,
     queries with the model's key (auth + decode + infer in the model's replica);
  4b. the same, the model registered as a torch.export program (.pt2);
  4c. seedserve's Open Inference Protocol path, measured on 4's running system
      (its rows only when 4 runs): POST /v2/models/{name}/infer with the
      binary tensor extension (the MLP's row as raw float32, the CNN's PNG as
      one BYTES element), which the ingress sends straight to the model's
      replica as it does the native path.
Every server runs the same two models on one replica each: the tiny
16->64->4 MLP (a JSON row) and a small CNN (about 83 MFLOPs on a 3x64x64 PNG
sent as base64 JSON). seedserve batches queries dynamically (its default);
the baselines run one query per model call, as written. wrk drives each at 1
and 16 connections. Writes benchmarks/results/serving.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict
from pathlib import Path

import httpx

from benchmarks._model import MODELS, WORKLOADS, Workload
from benchmarks._system import free_port, seedserve_up
from benchmarks._wrk import Result, run_wrk
from benchmarks.grpc import bodies
from seedserve.cluster.processes import Child, start_child, wait_until

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


_free_port = free_port


def _headers_for(workload: Workload, headers: dict[str, str]) -> dict[str, str]:
    if "keys" in headers:
        return {"Authorization": f"Bearer {json.loads(headers['keys'])[workload.path]}"}
    return headers


def _answers_one(base: str, workload: Workload, headers: dict[str, str]) -> bool:
    response = httpx.post(base + workload.path, content=workload.body, timeout=10,
                          headers={"Content-Type": "application/json", **_headers_for(workload, headers)})
    return response.status_code == 200


@contextmanager
def bare_starlette(logs: Path, optimized: bool = False) -> Iterator[tuple[str, dict[str, str]]]:
    port = _free_port()
    child = start_child("starlette", [sys.executable, "-m", "uvicorn", "benchmarks.bare_starlette:app", "--port",
                                      str(port), "--no-access-log", "--log-level", "warning"],
                        logs / f"starlette{'-optimized' if optimized else ''}.log",
                        env={**os.environ, "BENCH_OPTIMIZED": "1" if optimized else "0"})
    yield from _serving(child, f"http://127.0.0.1:{port}", {})


@contextmanager
def vanilla_serve(logs: Path, haproxy: bool) -> Iterator[tuple[str, dict[str, str]]]:
    port = _free_port()
    argv = [sys.executable, "-m", "benchmarks.vanilla_serve", "--port", str(port)] + (["--haproxy"] if haproxy else [])
    child = start_child("vanilla", argv, logs / f"vanilla-{'haproxy' if haproxy else 'default'}.log")
    yield from _serving(child, f"http://127.0.0.1:{port}", {}, timeout_s=240)


@contextmanager
def seedserve(logs: Path, fmt: str = "torchscript") -> Iterator[tuple[str, dict[str, str]]]:
    """``fmt``: the artifact registered, ``torchscript`` or ``export`` (a .pt2)."""
    import warnings

    from seedserve.client import ManagerClient
    from seedserve.client.export import save_program

    with seedserve_up(logs, port_base=26000) as running:
        import torch

        keys = {}
        with ManagerClient(running.manager_url, running.token) as manager, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's deprecation: measured on purpose
            for name, workload in WORKLOADS.items():
                if fmt == "export":
                    artifact = save_program(MODELS[name](), workload.manifest, running.data_dir / f"{name}.pt2")
                else:
                    artifact = running.data_dir / f"{name}.pt"
                    torch.jit.script(MODELS[name]()).save(str(artifact))
                keys[workload.path] = manager.register(artifact, workload.manifest)
        # Every model has its own key; the Authorization header is chosen per path below.
        yield from _serving(None, running.master_url, {"keys": json.dumps(keys)}, stop=False)


def _serving(child: Child | None, base: str, headers: dict[str, str], timeout_s: float = 120,
             stop: bool = True) -> Iterator[tuple[str, dict[str, str]]]:
    try:
        wait_until(lambda: all(_answers_one(base, w, headers) for w in WORKLOADS.values()), timeout_s,
                   f"{child.name if child else 'seedserve'} answering", child)
        yield base, headers
    finally:
        if stop and child is not None:
            child.stop(60)


_BARE = "bare Starlette (model in process)"
_V2_BINARY = "seedserve, /v2 binary (Open Inference Protocol)"

#: A query: path, body, headers beside the key.
Query = tuple[str, str | bytes, dict[str, str]]


def _native(workload: Workload) -> Query:
    return workload.path, workload.body, {}


def _v2_binary(workload: Workload) -> Query:
    (body,) = [b for b in bodies(workload) if b.transport == "/v2 HTTP, binary"]
    return body.path, body.content, body.headers


#: Rows measured on another server's running system: row -> (that server, its query for a workload).
VARIANTS: dict[str, tuple[str, Callable[[Workload], Query]]] = {_V2_BINARY: ("seedserve", _v2_binary)}

SERVERS: dict[str, Callable[[Path], AbstractContextManager[tuple[str, dict[str, str]]]]] = {
    _BARE: bare_starlette,
    "bare Starlette (frozen + optimized TorchScript, as seedserve runs it)": lambda logs: bare_starlette(logs, True),
    "vanilla Ray Serve (defaults)": lambda logs: vanilla_serve(logs, haproxy=False),
    "vanilla Ray Serve (HAProxy + throughput-optimized)": lambda logs: vanilla_serve(logs, haproxy=True),
    "seedserve": seedserve,
    "seedserve (torch.export .pt2)": lambda logs: seedserve(logs, "export"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--servers", nargs="+", default=[*SERVERS, *VARIANTS], choices=[*SERVERS, *VARIANTS],
                        metavar="SERVER", help="which servers and rows (default: all; bare Starlette always runs, "
                        "the ratios' base; a row of VARIANTS starts the server it is measured on)")
    parser.add_argument("--out", default="serving", help="results file stem in benchmarks/results/")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="seedserve-bench-logs-"))
    results: dict[str, dict[str, list[Result]]] = {w: {} for w in args.workloads}
    chosen = {_BARE, *args.servers}
    for name, server in SERVERS.items():
        here: dict[str, Callable[[Workload], Query]] = {name: _native} if name in chosen else {}
        here.update({row: query for row, (on, query) in VARIANTS.items() if on == name and row in chosen})
        if not here:
            continue
        print(f"== {name}", flush=True)
        with server(logs) as (base, headers):
            for workload in (WORKLOADS[w] for w in args.workloads):
                for row, query in here.items():
                    results[workload.name][row] = _measure(base, query(workload), _headers_for(workload, headers),
                                                           args, f"{workload.name}{'' if row == name else ' ' + row}")
        time.sleep(2)
    _write(results, args)
    failed = [f"{name} {w} c={r.concurrency}" for w, by_server in results.items() for name, rows in by_server.items()
              for r in rows if r.errors]
    if failed:
        raise SystemExit(f"runs with errors (their req/s are not results): {', '.join(failed)}")


def _measure(base: str, query: Query, auth: dict[str, str], args: argparse.Namespace, label: str) -> list[Result]:
    """A warm-up, then a wrk run of ``query`` at each concurrency."""
    path, body, headers = query
    url, headers = base + path, {**headers, **auth}
    run_wrk(url, body, headers, concurrency=4, seconds=3)
    rows = []
    for concurrency in args.concurrency:
        result = run_wrk(url, body, headers, concurrency=concurrency, seconds=args.seconds)
        print(f"   {label} c={concurrency:<3} {result.requests_per_s:8.0f} req/s  "
              f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  errors {result.errors}", flush=True)
        rows.append(result)
    return rows


_TITLES = {"mlp": "tiny MLP (16->64->4), JSON row", "cnn": "small CNN (~83 MFLOPs), 3x64x64 PNG as base64 JSON"}


def _write(results: dict[str, dict[str, list[Result]]], args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
            "machine": platform.machine(), "seconds_per_run": args.seconds}
    (RESULTS / f"{args.out}.json").write_text(json.dumps(
        {"meta": meta, "results": {w: {k: [asdict(r) for r in v] for k, v in by_server.items()}
                                   for w, by_server in results.items()}}, indent=2) + "\n")
    lines = [f"Measured {meta['date']} on {meta['cpus']} CPUs ({meta['machine']}), wrk -t1, "
             f"{args.seconds} s per row, one replica per model; all servers in one run, one at a time. "
             "seedserve serves TorchScript, and a torch.export program's traced graph, frozen and optimized for "
             "inference (oneDNN) when that is equivalent and faster; the second bare row runs that same graph, so "
             "its column isolates the serving path."]
    for workload, by_server in results.items():
        bare = by_server[_BARE]
        same_graph = next((v for k, v in by_server.items() if k.startswith("bare Starlette (frozen")), bare)
        fastest = {c: max((v[i].requests_per_s for k, v in by_server.items() if k.startswith("vanilla")),
                          default=float("nan")) for i, c in enumerate(args.concurrency)}
        lines += ["", f"**{_TITLES[workload]}**", "",
                  "| server | connections | req/s | p50 ms | p99 ms | errors | vs bare Starlette "
                  "| vs bare, same optimized graph | vs fastest vanilla Ray Serve |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, rows in by_server.items():
            for i, r in enumerate(rows):
                lines.append(f"| {name} | {r.concurrency} | {r.requests_per_s:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
                             f"| {r.errors} | {r.requests_per_s / bare[i].requests_per_s:.2f}x "
                             f"| {r.requests_per_s / same_graph[i].requests_per_s:.2f}x "
                             f"| {_ratio(r.requests_per_s, fastest[r.concurrency])} |")
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot(results, args.concurrency, RESULTS / f"{args.out}.png")


def _ratio(value: float, base: float) -> str:
    """``value / base`` as a table cell; n/a when no base ran (no vanilla Ray Serve row in the run)."""
    return "n/a" if math.isnan(base) else f"{value / base:.2f}x"


def _plot(results: dict[str, dict[str, list[Result]]], concurrency: list[int], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, len(results), figsize=(7 * len(results), 4), squeeze=False)
    for ax, (workload, by_server) in zip(axes[0], results.items(), strict=True):
        width = 0.8 / len(by_server)
        for i, (name, rows) in enumerate(by_server.items()):
            ax.bar([j + i * width for j in range(len(rows))], [r.requests_per_s for r in rows], width, label=name)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(concurrency))], [f"{c} connections" for c in concurrency])
        ax.set_ylabel("requests/s")
        ax.set_title(_TITLES[workload], fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
