"""Throughput, latency and CPU per request of the predict path, seedserve
beside its baselines and peers, in one run on one machine.

    .venv/bin/python -m benchmarks.serving [--seconds 10] [--model zoo:NAME | --model m.pt --manifest m.json]

Servers, one at a time so they do not share the CPUs:
  1. bare Starlette with the model in process (uvicorn, one worker), as written;
  1b. the same, running the frozen + optimized TorchScript graph seedserve serves;
  2. vanilla Ray Serve, default settings (Python proxy);
  3. vanilla Ray Serve, HAProxy ingress + throughput-optimized (Ray's fastest);
  4. PyTriton (nvidia-pytriton: Triton Inference Server with the model in
     Python), one instance per model, Triton's dynamic batcher on (max batch
     16, queue delay 0, Triton's default). Triton speaks KServe v2 only, so
     it gets v2 bodies, never the native ones: its first row v2 JSON (a
     tensor as JSON numbers, the CNN's PNG as base64 text in one BYTES
     element, decoded base64 -> Pillow -> CHW float as everywhere), its
     second the binary extension (raw float32, the raw PNG). PyTriton runs
     in a venv of its own, made on first use (see benchmarks._pytriton_env):
     ``~/.cache/seedserve-bench/pytriton-venv`` (or $SEEDSERVE_BENCH_CACHE),
     made by the interpreter that made .venv, with ``pip install
     torch==X+cpu`` (X: .venv's torch; the CPU build from the local wheel
     cache or the index) and then ``pip install -c <torch pin>
     nvidia-pytriton numpy pillow``; it runs with that interpreter's LIBDIR
     on LD_LIBRARY_PATH (Triton's Python stub links libpython3.X.so). Where
     the venv cannot be made the PyTriton rows are skipped, with the reason
     printed and kept in the results;
  5. seedserve: the real `seedserve up`, each model registered through the
     manager with a default manifest (one replica, no batching block:
     seedserve's default batching), queries with the model's key;
  5b. the same, registered as a torch.export program (.pt2);
  5c. seedserve tuned: the manifests with ``batching: {max_batch_size: 16,
      max_wait_ms: 5}`` (what the CNN's manifest in benchmarks._model pins);
  5d. seedserve's Open Inference Protocol path, measured on 5's running system:
      POST /v2/models/{name}/infer with the binary tensor extension.

The models (``--model``, see benchmarks._selection): by default the tiny
16->64->4 MLP (a JSON row) and a small CNN (about 83 MFLOPs on a 3x64x64
PNG sent as base64 JSON); ``zoo:NAME`` any entry of benchmarks._zoo (an
image-shaped input goes as a PNG, others as base64 tensors); or a TorchScript
file with ``--manifest`` (tensor and image inputs). Each server runs each
model on one replica (instance, worker). The hand-written baselines run one
query per model call, as written. wrk drives each at 1 and 16 connections;
"CPU ms/req" is the user + system CPU of the server's whole process tree
(its children, their descendants and the sessions they lead: Ray's GCS,
raylet, workers, HAProxy, Triton and its stubs, for seedserve also its
database and manager) during the cell, over the requests answered.
Writes benchmarks/results/<out>.{json,md,png} (``--out``, default serving).
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
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import httpx

from benchmarks._cpu import cpu_between, ms_per_request, sample_tree
from benchmarks._pytriton_env import PyTritonUnavailable, pytriton_python, server_env
from benchmarks._selection import TUNED_BATCHING, Served, batchable, select, torchscript, triton_batches
from benchmarks._system import free_port, seedserve_up
from benchmarks._v2_bodies import v2_binary, v2_json
from benchmarks._wrk import Result, run_wrk
from seedserve.cluster.processes import Child, start_child, wait_until

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

class RowsSkipped(Exception):
    """A server that cannot run its rows here; the message says why (printed and kept in the results)."""


#: A query: path, body, headers beside the key.
Query = tuple[str, str | bytes, dict[str, str]]


@dataclass(frozen=True)
class Setup:
    """What every server is started with: the models, and how its children select them."""

    models: list[Served]
    model_arg: str = "builtin"
    manifest_arg: str | None = None
    logs: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="seedserve-bench-logs-")))

    def child_args(self) -> list[str]:
        return ["--model", self.model_arg] + (["--manifest", self.manifest_arg] if self.manifest_arg else [])

    def child_env(self) -> dict[str, str]:
        return {**os.environ, "BENCH_MODEL": self.model_arg,
                **({"BENCH_MANIFEST": self.manifest_arg} if self.manifest_arg else {})}


@dataclass(frozen=True)
class Serving:
    """A running server: its address, each model's key (seedserve) and the root of its process tree."""

    base: str
    pid: int
    keys: dict[str, str] = field(default_factory=dict)

    def auth(self, served: Served) -> dict[str, str]:
        key = self.keys.get(served.manifest["name"])
        return {"Authorization": f"Bearer {key}"} if key else {}


def _native(served: Served) -> Query:
    return served.path, served.body, {"Content-Type": "application/json"}


def _answers(serving: Serving, query: Query, served: Served) -> bool:
    path, body, headers = query
    response = httpx.post(serving.base + path, content=body, timeout=10, headers={**headers, **serving.auth(served)})
    return response.status_code == 200


def _serving(child: Child | None, serving: Serving, setup: Setup, first: Callable[[Served], Query],
             timeout_s: float = 120) -> Iterator[Serving]:
    try:
        wait_until(lambda: all(_answers(serving, first(s), s) for s in setup.models), timeout_s,
                   f"{child.name if child else 'seedserve'} answering", child)
        yield serving
    finally:
        if child is not None:
            child.stop(60)


@contextmanager
def bare_starlette(setup: Setup, optimized: bool = False) -> Iterator[Serving]:
    port = free_port()
    child = start_child("starlette", [sys.executable, "-m", "uvicorn", "benchmarks.bare_starlette:app", "--port",
                                      str(port), "--no-access-log", "--log-level", "warning"],
                        setup.logs / f"starlette{'-optimized' if optimized else ''}.log",
                        env={**setup.child_env(), "BENCH_OPTIMIZED": "1" if optimized else "0"})
    yield from _serving(child, Serving(f"http://127.0.0.1:{port}", child.process.pid), setup, _native)


@contextmanager
def vanilla_serve(setup: Setup, haproxy: bool) -> Iterator[Serving]:
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.vanilla_serve", "--port", str(port), *setup.child_args()]
    child = start_child("vanilla", argv + (["--haproxy"] if haproxy else []),
                        setup.logs / f"vanilla-{'haproxy' if haproxy else 'default'}.log")
    yield from _serving(child, Serving(f"http://127.0.0.1:{port}", child.process.pid), setup, _native, 240)


@contextmanager
def pytriton(setup: Setup) -> Iterator[Serving]:
    python = pytriton_python()  # PyTritonUnavailable: the caller skips the rows
    port = free_port()
    argv = [str(python), "-m", "benchmarks.pytriton_server", "--port", str(port), "--grpc-port", str(free_port()),
            "--metrics-port", str(free_port()), *setup.child_args()]
    child = start_child("pytriton", argv, setup.logs / "pytriton.log", env=server_env())
    yield from _serving(child, Serving(f"http://127.0.0.1:{port}", child.process.pid), setup, _pytriton_json, 300)


def _image_shape(served: Served) -> list[int]:
    # Triton's batching models declare the image as dims (1,) below the batch dimension.
    return [1, 1] if triton_batches(served) else [1]


def _pytriton_json(served: Served) -> Query:
    return v2_json(served, _image_shape(served))


def _pytriton_binary(served: Served) -> Query:
    return v2_binary(served, _image_shape(served))


def _seedserve_binary(served: Served) -> Query:
    return v2_binary(served, [1])


@contextmanager
def seedserve(setup: Setup, fmt: str = "torchscript", tuned: bool = False) -> Iterator[Serving]:
    """``fmt``: the artifact registered, ``torchscript`` or ``export`` (a .pt2);
    ``tuned``: register with :data:`TUNED_BATCHING` (models that batch)."""
    from seedserve.client import ManagerClient
    from seedserve.client.export import save_program

    if fmt == "export" and setup.manifest_arg:
        raise RowsSkipped("a TorchScript file has no torch.export program to register")
    with seedserve_up(setup.logs, port_base=26000) as running:
        keys: dict[str, str] = {}
        with ManagerClient(running.manager_url, running.token) as manager, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's deprecation: measured on purpose
            for served in setup.models:
                manifest = served.manifest
                if tuned and batchable(manifest):
                    manifest = {**manifest, "batching": TUNED_BATCHING}
                name = manifest["name"]
                if setup.manifest_arg:  # the TorchScript file as given
                    artifact = Path(setup.model_arg)
                elif fmt == "export":
                    artifact = save_program(served.make(), manifest, running.data_dir / f"{name}.pt2")
                else:
                    artifact = running.data_dir / f"{name}.pt"
                    torchscript(served).save(str(artifact))
                key = manager.register(artifact, manifest)
                if key is None:
                    raise RuntimeError(f"{name} was registered before on this fresh system: no new key")
                keys[name] = key
        yield from _serving(None, Serving(running.master_url, running.pid, keys), setup, _native)


_BARE = "bare Starlette (model in process)"
_TUNED = (f"seedserve (tuned: max_batch_size {TUNED_BATCHING['max_batch_size']}, "
          f"max_wait_ms {TUNED_BATCHING['max_wait_ms']:g})")
_PYTRITON = "PyTriton (v2 JSON body)"

#: Each server: how to start it, and its rows: row -> the query it sends.
SERVERS: dict[str, tuple[Callable[[Setup], AbstractContextManager[Serving]], dict[str, Callable[[Served], Query]]]] = {
    "bare": (bare_starlette, {_BARE: _native}),
    "bare-optimized": (lambda s: bare_starlette(s, True),
                       {"bare Starlette (frozen + optimized TorchScript, as seedserve runs it)": _native}),
    "vanilla": (lambda s: vanilla_serve(s, haproxy=False), {"vanilla Ray Serve (defaults)": _native}),
    "vanilla-haproxy": (lambda s: vanilla_serve(s, haproxy=True),
                        {"vanilla Ray Serve (HAProxy + throughput-optimized)": _native}),
    "pytriton": (pytriton, {_PYTRITON: _pytriton_json, "PyTriton, /v2 binary": _pytriton_binary}),
    "seedserve": (seedserve, {"seedserve": _native,
                              "seedserve, /v2 binary (Open Inference Protocol)": _seedserve_binary}),
    "seedserve-export": (lambda s: seedserve(s, "export"), {"seedserve (torch.export .pt2)": _native}),
    "seedserve-tuned": (lambda s: seedserve(s, tuned=True), {_TUNED: _native}),
}
ROWS = {row: server for server, (_, rows) in SERVERS.items() for row in rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--model", default="builtin",
                        help="builtin (the MLP and the CNN), zoo:NAME (an entry of benchmarks._zoo), "
                        "or a TorchScript file (with --manifest)")
    parser.add_argument("--manifest", help="the JSON manifest of a --model TorchScript file")
    parser.add_argument("--workloads", nargs="+", metavar="KEY", help="of the models selected, only these (mlp, cnn)")
    parser.add_argument("--servers", nargs="+", default=list(SERVERS), choices=list(SERVERS),
                        help="which servers (default: all; bare always runs, the ratios' base)")
    parser.add_argument("--out", default="serving", help="results file stem in benchmarks/results/")
    args = parser.parse_args(argv)
    setup = _setup(args, parser)
    results: dict[str, dict[str, list[Result]]] = {s.key: {} for s in setup.models}
    skipped: dict[str, str] = {}
    for name in dict.fromkeys(["bare", *args.servers]):
        start, rows = SERVERS[name]
        print(f"== {name}", flush=True)
        try:
            with start(setup) as serving:
                for served in setup.models:
                    for row, query in rows.items():
                        results[served.key][row] = _measure(serving, served, query(served), args,
                                                            f"{served.key} {row}")
        except (PyTritonUnavailable, RowsSkipped) as exc:
            print(f"   skipped {', '.join(rows)}: {exc}", flush=True)
            skipped.update({row: str(exc) for row in rows})
        time.sleep(2)
    _write(results, setup, skipped, args)
    failed = [f"{name} {w} c={r.concurrency}" for w, by_row in results.items() for name, rows in by_row.items()
              for r in rows if r.errors]
    if failed:
        raise SystemExit(f"runs with errors (their req/s are not results): {', '.join(failed)}")


def _setup(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Setup:
    # Absolute paths: Ray's workers and the other venv's server do not run in this directory.
    manifest = str(Path(args.manifest).resolve()) if args.manifest else None
    model = args.model if args.model == "builtin" or args.model.startswith("zoo:") else str(Path(args.model).resolve())
    try:
        models = select(model, manifest)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    if args.workloads:
        models = [m for m in models if m.key in args.workloads]
    return Setup(models, model, manifest)


def _measure(serving: Serving, served: Served, query: Query, args: argparse.Namespace, label: str) -> list[Result]:
    """A warm-up, then a wrk run of ``query`` at each concurrency, with the server tree's CPU around each."""
    path, body, headers = query
    url, headers = serving.base + path, {**headers, **serving.auth(served)}
    run_wrk(url, body, headers, concurrency=4, seconds=3)
    rows = []
    for concurrency in args.concurrency:
        before = sample_tree(serving.pid)
        result = run_wrk(url, body, headers, concurrency=concurrency, seconds=args.seconds)
        cpu_ms = ms_per_request(cpu_between(before, sample_tree(serving.pid)), result.requests)
        result = replace(result, cpu_ms_per_request=cpu_ms)
        print(f"   {label} c={concurrency:<3} {result.requests_per_s:8.0f} req/s  "
              f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  CPU {_cpu_cell(cpu_ms)} ms/req  "
              f"errors {result.errors}", flush=True)
        rows.append(result)
    return rows


def _cpu_cell(cpu_ms: float | None) -> str:
    return "n/a" if cpu_ms is None else f"{cpu_ms:.2f}"


_NOTE = (
    "seedserve serves TorchScript, and a torch.export program's traced graph, frozen and optimized for "
    "inference (oneDNN) when that is equivalent and faster; the second bare row runs that same graph, so its "
    "column isolates the serving path. seedserve's rows register default manifests (one replica, no batching "
    "block: the replica chooses the batch size, up to 16, and the wait by load); the tuned row adds "
    "`batching: {max_batch_size: 16, "
    "max_wait_ms: 5}`. PyTriton (one instance per model, Triton's dynamic batcher, max batch 16, delay 0) "
    "cannot take the native bodies (Triton's HTTP is KServe v2 only): its rows send v2 JSON (an image's base64 "
    "text as one BYTES element, decoded base64 -> Pillow -> CHW float like every server) and the v2 binary "
    "extension (the raw PNG); it runs in its own venv (~/.cache/seedserve-bench/pytriton-venv: the interpreter "
    "that made .venv, `pip install torch==X+cpu` at .venv's torch, then nvidia-pytriton, numpy, pillow; "
    "LD_LIBRARY_PATH at that interpreter's LIBDIR for Triton's libpython stub). CPU ms/req: user + system CPU "
    "of the server's whole process tree (Ray's processes, HAProxy, Triton and its stubs; for seedserve also its "
    "database and manager) during the cell, over the requests answered.")


def _write(results: dict[str, dict[str, list[Result]]], setup: Setup, skipped: dict[str, str],
           args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
            "machine": platform.machine(), "seconds_per_run": args.seconds, "model": setup.model_arg,
            "manifest": setup.manifest_arg, "skipped": skipped}
    (RESULTS / f"{args.out}.json").write_text(json.dumps(
        {"meta": meta, "results": {w: {k: [asdict(r) for r in v] for k, v in by_row.items()}
                                   for w, by_row in results.items()}}, indent=2) + "\n")
    lines = [f"Measured {meta['date']} on {meta['cpus']} CPUs ({meta['machine']}), wrk -t1, "
             f"{args.seconds} s per row, one replica per model; all servers in one run, one at a time. " + _NOTE]
    lines += [f"Skipped: {row}: {reason}" for row, reason in skipped.items()]
    titles = {s.key: s.title for s in setup.models}
    for workload, by_row in results.items():
        lines += ["", f"**{titles[workload]}**", ""] + _table(by_row, args.concurrency)
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot(results, titles, args.concurrency, RESULTS / f"{args.out}.png")


def _fastest(by_row: dict[str, list[Result]], prefix: str, concurrency: list[int]) -> dict[int, float]:
    return {c: max((v[i].requests_per_s for k, v in by_row.items() if k.startswith(prefix)), default=float("nan"))
            for i, c in enumerate(concurrency)}


def _table(by_row: dict[str, list[Result]], concurrency: list[int]) -> list[str]:
    bare = by_row[_BARE]
    same_graph = next((v for k, v in by_row.items() if k.startswith("bare Starlette (frozen")), bare)
    vanilla, triton = _fastest(by_row, "vanilla", concurrency), _fastest(by_row, "PyTriton", concurrency)
    lines = ["| server | connections | req/s | p50 ms | p99 ms | CPU ms/req | errors | vs bare Starlette "
             "| vs bare, same optimized graph | vs fastest vanilla Ray Serve | vs fastest PyTriton |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, rows in by_row.items():
        for i, r in enumerate(rows):
            lines.append(f"| {name} | {r.concurrency} | {r.requests_per_s:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
                         f"| {_cpu_cell(r.cpu_ms_per_request)} | {r.errors} "
                         f"| {r.requests_per_s / bare[i].requests_per_s:.2f}x "
                         f"| {r.requests_per_s / same_graph[i].requests_per_s:.2f}x "
                         f"| {_ratio(r.requests_per_s, vanilla[r.concurrency])} "
                         f"| {_ratio(r.requests_per_s, triton[r.concurrency])} |")
    return lines


def _ratio(value: float, base: float) -> str:
    """``value / base`` as a table cell; n/a when no base ran (no such row in the run)."""
    return "n/a" if math.isnan(base) else f"{value / base:.2f}x"


def _plot(results: dict[str, dict[str, list[Result]]], titles: dict[str, str], concurrency: list[int],
          path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, len(results), figsize=(7 * len(results), 4), squeeze=False)
    for ax, (workload, by_row) in zip(axes[0], results.items(), strict=True):
        width = 0.8 / max(len(by_row), 1)
        for i, (name, rows) in enumerate(by_row.items()):
            ax.bar([j + i * width for j in range(len(rows))], [r.requests_per_s for r in rows], width, label=name)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(concurrency))], [f"{c} connections" for c in concurrency])
        ax.set_ylabel("requests/s")
        ax.set_title(titles[workload], fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
