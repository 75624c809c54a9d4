"""Density: many small models registered on this one node, idle ones scaled to zero.

    .venv/bin/python -m benchmarks.density [--models 50]

Starts the real `seedserve up`, measures the memory of everything it runs
(proportional set size, so libraries shared by every replica count once),
registers N small MLPs of varied widths with min_replicas 0, and then:
  * registration: time of each `register` (upload, test-load in a child
    process, store), and from acknowledgement to the first answer;
  * servability: every model answers a query with its own model's output;
  * scale to zero: how long until no replica runs, and memory then;
  * cold start: the first query to an idle model (Serve starts a replica,
    the replica loads the model from the database), then a warm query.
Writes benchmarks/results/density.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from benchmarks._system import Running, seedserve_up, tree_pss_bytes
from seedserve.client import Client, ManagerClient
from seedserve.deployments.serve_api import ray_auth_headers

RESULTS = Path(__file__).resolve().parent / "results"
MB = 2**20


def _model(i: int) -> torch.nn.Module:
    torch.manual_seed(i)
    width = (16, 32, 64, 128)[i % 4]
    return torch.nn.Sequential(torch.nn.Linear(16, width), torch.nn.ReLU(), torch.nn.Linear(width, 4)).eval()


def _manifest(i: int) -> dict[str, Any]:
    return {"name": f"dense-{i:02d}", "inputs": [{"name": "x", "shape": [-1, 16]}], "outputs": [{"name": "y"}],
            "scaling": {"min_replicas": 0, "max_replicas": 1, "downscale_delay_s": 5, "metrics_window_s": 2}}


def _running_replicas(dashboard: str) -> int:
    details = httpx.get(f"{dashboard}/api/serve/applications/", headers=ray_auth_headers(), timeout=30).json()
    return sum(1 for name, app in (details.get("applications") or {}).items() if name.startswith("model-")
               for deployment in (app.get("deployments") or {}).values()
               for replica in deployment.get("replicas") or [] if replica.get("state") == "RUNNING")


def _first_answer(client: Client, name: str, x: np.ndarray, timeout_s: float = 300) -> float:
    """Seconds until ``name`` answers (retrying while its application deploys)."""
    start = time.perf_counter()
    while True:
        try:
            client.predict(name, x=x)
            return time.perf_counter() - start
        except Exception:
            if time.perf_counter() - start > timeout_s:
                raise
            time.sleep(0.2)


def run(running: Running, count: int, work: Path) -> dict[str, Any]:
    dashboard = running.dashboard_url
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    report: dict[str, Any] = {"memory_mb": {"idle_system": tree_pss_bytes(running.pid) / MB}}
    keys: dict[str, str] = {}
    register_s, first_answer_s = [], []
    with ManagerClient(running.manager_url, running.token, timeout=120) as manager:
        for i in range(count):
            artifact = work / f"dense-{i}.pt"
            torch.jit.script(_model(i)).save(str(artifact))
            start = time.perf_counter()
            key = manager.register(artifact, _manifest(i))
            register_s.append(time.perf_counter() - start)
            assert key is not None
            keys[_manifest(i)["name"]] = key
            print(f"registered {i + 1}/{count} in {register_s[-1]:.2f} s", flush=True)
    report["registration_s"] = _summary(register_s)

    # Servable: each model, first answer after registration (deploy + cold start), and the right output.
    wrong = []
    for i, (name, key) in enumerate(keys.items()):
        with Client(running.master_url, key, timeout=120) as client:
            first_answer_s.append(_first_answer(client, name, x))
            got = np.array(client.predict(name, x=x)["y"])
        if not np.allclose(got, _model(i)(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6):
            wrong.append(name)
        print(f"{name} answered after {first_answer_s[-1]:.1f} s", flush=True)
    report["servable"] = {"models": count, "answered": len(first_answer_s), "wrong_outputs": wrong}
    report["first_answer_after_registration_s"] = _summary(first_answer_s)

    start = time.perf_counter()
    while _running_replicas(dashboard) > 0:
        time.sleep(1)
    report["all_idle_after_s"] = time.perf_counter() - start
    time.sleep(5)
    report["memory_mb"]["all_registered_all_idle"] = tree_pss_bytes(running.pid) / MB

    # Cold start of an idle model, then warm; and the memory one running replica adds.
    cold, warm = [], []
    names = list(keys)[:: max(1, count // 10)]
    for name in names:
        with Client(running.master_url, keys[name], timeout=120) as client:
            start = time.perf_counter()
            client.predict(name, x=x)
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            client.predict(name, x=x)
            warm.append(time.perf_counter() - start)
    report["memory_mb"]["with_one_replica_per_queried_model"] = tree_pss_bytes(running.pid) / MB
    report["replicas_running_after_cold_starts"] = _running_replicas(dashboard)
    report["cold_start_s"] = _summary(cold)
    report["warm_query_ms"] = _summary([w * 1000 for w in warm])
    return report


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"n": len(values), "median": statistics.median(values), "p90": ordered[int(0.9 * (len(values) - 1))],
            "max": ordered[-1]}


def _write(report: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "density.json").write_text(json.dumps(report, indent=2) + "\n")
    memory = report["memory_mb"]
    replicas = report["replicas_running_after_cold_starts"]
    per_replica = (memory["with_one_replica_per_queried_model"] - memory["all_registered_all_idle"]) / max(1, replicas)
    rows = [
        ("models registered / answering correctly",
         f"{report['servable']['models']} / "
         f"{report['servable']['answered'] - len(report['servable']['wrong_outputs'])}"),
        ("register (upload + test-load + store), median / max s",
         f"{report['registration_s']['median']:.2f} / {report['registration_s']['max']:.2f}"),
        ("registration -> first answer, median / max s",
         f"{report['first_answer_after_registration_s']['median']:.1f} / "
         f"{report['first_answer_after_registration_s']['max']:.1f}"),
        ("all scaled to zero after the last query, s", f"{report['all_idle_after_s']:.0f}"),
        ("memory, system idle before any model (PSS)", f"{memory['idle_system']:,.0f} MB"),
        ("memory, all models registered, all at zero replicas", f"{memory['all_registered_all_idle']:,.0f} MB"),
        (f"memory, {replicas} replicas running", f"{memory['with_one_replica_per_queried_model']:,.0f} MB "
                                                 f"({per_replica:,.0f} MB per replica)"),
        ("cold start (first query to an idle model), median / max s",
         f"{report['cold_start_s']['median']:.1f} / {report['cold_start_s']['max']:.1f}"),
        ("warm query right after, median ms", f"{report['warm_query_ms']['median']:.1f}"),
    ]
    lines = [f"Measured {report['meta']['date']} on {report['meta']['cpus']} CPUs, "
             f"{report['meta']['memory_gb']:.0f} GB, one Ray node; every model min_replicas 0, downscale after 5 s.",
             "",
             "| measure | value |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in rows]
    (RESULTS / "density.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=50)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="seedserve-density-"))
    with seedserve_up(logs, port_base=27000) as running:
        report = run(running, args.models, logs)
    report["meta"] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
                      "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30}
    _write(report)


if __name__ == "__main__":
    main()
