"""Seconds to first answer (issue 19, part 4): how long until seedserve answers.

    .venv/bin/python -m benchmarks.first_answer [--repeats 3] [--port-base 27000]

Each repeat, on a fresh data directory (auto-calibration off, as on a node
whose worker type is already calibrated: the master starts no sweep):

1. **up**: the real `seedserve up` from its start until it prints "seedserve
   is up", with its phases from its own log lines ("up: <phase> ready in S s");
2. **registration -> first answer**: the tiny MLP (TorchScript) registered
   through the SDK (upload, test-load and profile in the sandbox, store),
   then queried every 50 ms until it answers; the manager's own steps come
   from its log line ("registered model ...: upload S s, test-load S s, ..."),
   the reconciler's deploy and the replica's "ready" from theirs;
3. **min_replicas 0**: a second MLP registered with ``min_replicas: 0``,
   its first answer after registration, then, once it has scaled to zero,
   the first query to it (a cold start, timed by the client) and a warm one.

After the repeats, Ray's own floor in the same run: ``ray start --head`` as
seedserve starts it (same flags, environment and port layout) until its
dashboard serves Serve's REST API, then a driver's ``ray.init`` +
``serve.start`` (HAProxy ingress, as seedserve runs it) until the proxy
answers. Writes benchmarks/results/first_answer.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from benchmarks._model import MLP, make_mlp
from benchmarks._system import free_port
from seedserve.client import Client, ManagerClient
from seedserve.cluster.processes import Child, start_child
from seedserve.deployments.serve_api import ray_auth_headers

RESULTS = Path(__file__).resolve().parent / "results"
BIN = Path(sys.executable).parent
X = np.linspace(0.1, 1.6, 16, dtype=np.float32).reshape(1, 16)
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _log_time(line: str) -> float | None:
    """The epoch seconds of a text log line of seedserve's."""
    match = _LOG_TIME.match(line)
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _log_lines(data: Path) -> list[str]:
    try:
        return (data / "logs" / "seedserve.log").read_text(errors="replace").splitlines()
    except OSError:
        return []


@contextmanager
def _up(logs: Path, port_base: int) -> Iterator[tuple[dict[str, Any], dict[str, str], Child]]:
    """`seedserve up` on fresh ports and data; yields (timings, urls and token, child)."""
    data = Path(tempfile.mkdtemp(prefix="seedserve-first-"))
    ports = {name: free_port() for name in ("MASTER", "MANAGER", "DB", "RAY", "DASHBOARD", "GRPC")}
    env = {**os.environ, **{f"SEEDSERVE_{k}_PORT": str(v) for k, v in ports.items()},
           "SEEDSERVE_DATA_DIR": str(data), "SEEDSERVE_INTERNAL_PORT_BASE": str(port_base),
           "SEEDSERVE_AUTO_CALIBRATE": "false"}
    started = time.time()
    child = start_child("seedserve", [str(BIN / "seedserve"), "up"], logs / f"{data.name}.log", env=env)
    try:
        # Polled every 20 ms: the poll's own delay stays small against the phases.
        deadline = time.monotonic() + 300
        while "seedserve is up" not in child.log.read_text(errors="replace"):
            if not child.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"seedserve up did not come up:\n{child.log_tail(40)}")
            time.sleep(0.02)
        total = time.time() - started
        phases, at = {}, {}
        for line in _log_lines(data):
            found = re.search(r"seedserve\.up: up: (.+) ready in ([\d.]+) s \(at ([\d.]+) s\)", line)
            if found is not None:
                phases[found.group(1)], at[found.group(1)] = float(found.group(2)), float(found.group(3))
        urls = {"master": f"http://127.0.0.1:{ports['MASTER']}", "manager": f"http://127.0.0.1:{ports['MANAGER']}",
                "dashboard": f"http://127.0.0.1:{ports['DASHBOARD']}",
                "token": (data / "admin-token").read_text().strip(), "data": str(data)}
        yield {"up_s": total, "phases_s": phases, "ready_at_s": at}, urls, child
    finally:
        child.stop(60)


def _first_answer(client: Client, name: str, timeout_s: float = 120) -> float:
    """Epoch seconds of the first answer of ``name``, queried every 50 ms."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.predict(name, x=X)
            return time.time()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _running_replicas(dashboard: str, app: str) -> int:
    details = httpx.get(f"{dashboard}/api/serve/applications/", headers=ray_auth_headers(), timeout=30).json()
    deployments = ((details.get("applications") or {}).get(app) or {}).get("deployments") or {}
    return sum(1 for d in deployments.values() for r in d.get("replicas") or [] if r.get("state") == "RUNNING")


def _manifest(name: str, min_replicas: int) -> dict[str, Any]:
    manifest = json.loads(json.dumps(MLP.manifest))
    manifest["name"] = name
    manifest["scaling"] = {"min_replicas": min_replicas, "max_replicas": 1, "num_cpus": 0.1}
    if min_replicas == 0:
        manifest["scaling"] |= {"downscale_delay_s": 3, "metrics_window_s": 2}
    return manifest


def _registered(urls: dict[str, str], name: str, min_replicas: int, artifact: Path) -> dict[str, Any]:
    """Register ``name`` and time it until its first answer, with the log's steps in between."""
    with ManagerClient(urls["manager"], urls["token"], timeout=120) as manager:
        began = time.time()
        key = manager.register(artifact, _manifest(name, min_replicas))
        registered = time.time()
    assert key is not None
    with Client(urls["master"], key, timeout=60) as client:
        answered = _first_answer(client, name)
    row: dict[str, Any] = {"register_s": registered - began, "first_answer_s": answered - began,
                           "after_register_s": answered - registered}
    lines = _log_lines(Path(urls["data"]))
    for line in lines:
        if f"registered model {name} version" in line:
            steps = line.split(": ", 2)[2]
            row["manager_s"] = {step: float(s) for step, s in re.findall(r"([\w-]+) ([\d.]+) s", steps)}
    # The reconciler may deploy before the SDK has read the answer: from the upload's start.
    deployed = [t for line in lines if "model application(s)" in line and (t := _log_time(line)) and t >= began]
    ready = [t for line in lines if f"model {name} version 1 ready" in line and (t := _log_time(line))]
    if deployed:
        row["reconcile_wait_s"] = deployed[0] - registered
    if deployed and ready:
        row["replica_start_s"] = ready[0] - deployed[0]
        row["routing_s"] = answered - ready[0]
    return {**row, "key": key}


def _cold_start(urls: dict[str, str], name: str, key: str) -> dict[str, float]:
    """Once ``name`` is at zero replicas: its first query (a cold start) and a warm one."""
    deadline = time.monotonic() + 120
    while _running_replicas(urls["dashboard"], f"model-{name}") > 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not scale to zero within 120 s")
        time.sleep(0.5)
    time.sleep(1)
    with Client(urls["master"], key, timeout=60) as client:
        began = time.perf_counter()
        client.predict(name, x=X)
        cold = time.perf_counter() - began
        began = time.perf_counter()
        client.predict(name, x=X)
        warm = time.perf_counter() - began
    return {"cold_s": cold, "warm_ms": warm * 1000}


def repeat(logs: Path, port_base: int, artifact: Path) -> dict[str, Any]:
    with _up(logs, port_base) as (row, urls, _):
        print(f"  up in {row['up_s']:.2f} s: {row['phases_s']}", flush=True)
        one = _registered(urls, "first-mlp", 1, artifact)
        print(f"  min_replicas 1: first answer {one['first_answer_s']:.2f} s after the upload began", flush=True)
        zero = _registered(urls, "zero-mlp", 0, artifact)
        print(f"  min_replicas 0: first answer {zero['first_answer_s']:.2f} s after the upload began", flush=True)
        cold = _cold_start(urls, "zero-mlp", zero.pop("key"))
        print(f"  min_replicas 0 at zero: cold start {cold['cold_s']:.2f} s", flush=True)
        one.pop("key")
        return {**row, "min1": one, "min0": zero, "cold": cold}


_FLOOR_DRIVER = """
import json, sys, time
import httpx
t0 = time.time()
import ray
from ray import serve
imported = time.time()
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
connected = time.time()
serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[2])})
started = time.time()
while True:
    try:
        httpx.get(f"http://127.0.0.1:{sys.argv[2]}/", timeout=1)
        break
    except httpx.HTTPError:
        time.sleep(0.02)
print(json.dumps({"import_s": imported - t0, "ray_init_s": connected - imported, "serve_start_s": started - connected,
                  "proxy_answers_s": time.time() - started}))
"""


def ray_floor(logs: Path, port_base: int) -> dict[str, float]:
    """``ray start --head`` as seedserve starts it, then ``ray.init`` + ``serve.start`` in a driver."""
    from seedserve.cluster.components import start_ray_head
    from seedserve.cluster.ports import PortPlan
    from seedserve.settings import Settings

    data = Path(tempfile.mkdtemp(prefix="seedserve-floor-"))
    settings = Settings(data_dir=data, ray_port=free_port(), dashboard_port=free_port(), log_file=data / "x.log")
    began = time.time()
    head = start_ray_head(settings, PortPlan(port_base))
    try:
        head_s = time.time() - began
        env = {**os.environ, "RAY_AUTH_MODE": "token"}
        out = subprocess.run([sys.executable, "-c", _FLOOR_DRIVER, f"127.0.0.1:{settings.ray_port}", str(free_port())],
                             capture_output=True, text=True, timeout=300, env=env, check=True)
        driver = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        head.stop(60)
    return {"ray_head_and_dashboard_s": head_s, **driver}


def _summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "median": statistics.median(values), "max": max(values)}


def _collect(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and max of every number across the repeats, keyed by its path."""
    flat: dict[str, list[float]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(value, (int, float)):
            flat.setdefault(prefix, []).append(float(value))

    for row in rows:
        walk("", row)
    return {path: _summary(values) for path, values in flat.items()}


def _machine() -> str:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPUs ({platform.machine()}, {cpu}), torch {torch.__version__}"


def _write(report: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "first_answer.json").write_text(json.dumps(report, indent=2) + "\n")
    s = report["summary"]

    def cell(path: str, digits: int = 2) -> str:
        if path not in s:
            return "-"
        return f"{s[path]['median']:.{digits}f} / {s[path]['max']:.{digits}f}"

    lines = [
        f"Measured {report['date']} on {report['machine']}; {report['repeats']} repeats, each on a fresh data "
        "directory with auto-calibration off (an already calibrated node); median / max seconds.",
        "",
        "| phase | median / max s | target |",
        "|---|---:|---:|",
        f"| **`seedserve up` until \"seedserve is up\"** | {cell('up_s')} | <= 20 |",
    ]
    for phase in report["rows"][0]["phases_s"]:
        lines.append(f"| up: {phase}, from its launch (ready at, from the start) | {cell('phases_s.' + phase)} "
                     f"({cell('ready_at_s.' + phase)}) | |")
    for key, title, target in (("min1", "registration -> first answer (min_replicas 1)", "<= 8"),
                               ("min0", "registration -> first answer (min_replicas 0)", "")):
        lines.append(f"| **{title}** | {cell(key + '.first_answer_s')} | {target} |")
        lines.append(f"| {key}: register call (SDK) | {cell(key + '.register_s')} | |")
        for step in report["rows"][0][key].get("manager_s", {}):
            lines.append(f"| {key}: manager, {step} | {cell(f'{key}.manager_s.{step}')} | |")
        lines.append(f"| {key}: registered -> reconciler deploys | {cell(key + '.reconcile_wait_s')} | |")
        lines.append(f"| {key}: deploy -> replica ready | {cell(key + '.replica_start_s')} | |")
        lines.append(f"| {key}: replica ready -> first answer | {cell(key + '.routing_s')} | |")
    lines += [
        f"| **min_replicas 0, at zero: first query (cold start)** | {cell('cold.cold_s')} | <= 5 |",
        f"| min_replicas 0: the warm query after it, ms | {cell('cold.warm_ms', 1)} | |",
        "",
        "Ray's own floor in the same run (one measurement):",
        "",
        "| step | s |",
        "|---|---:|",
    ]
    floor = report["ray_floor"]
    for key, title in (("ray_head_and_dashboard_s", "`ray start --head` (seedserve's flags) until the dashboard "
                                                     "serves Serve's REST API"),
                       ("import_s", "driver: import ray, ray.serve"), ("ray_init_s", "driver: `ray.init(address)`"),
                       ("serve_start_s", "driver: `serve.start` (controller)"),
                       ("proxy_answers_s", "driver: until Serve's HTTP proxy answers")):
        lines.append(f"| {title} | {floor[key]:.2f} |")
    lines.append(f"| **floor: head + ray.init + serve.start + proxy** | {floor['floor_s']:.2f} |")
    (RESULTS / "first_answer.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--port-base", type=int, default=27000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="first-answer-") as tmp:
        work = Path(tmp)
        artifact = work / "mlp.pt"
        torch.jit.script(make_mlp()).save(str(artifact))
        rows = []
        for i in range(args.repeats):
            print(f"repeat {i + 1}/{args.repeats}", flush=True)
            rows.append(repeat(work, args.port_base, artifact))
        floor = ray_floor(work, args.port_base)
    floor["floor_s"] = sum(floor[k] for k in ("ray_head_and_dashboard_s", "ray_init_s", "serve_start_s",
                                              "proxy_answers_s"))
    print(f"Ray's floor: {floor}", flush=True)
    report = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": _machine(),
              "repeats": args.repeats, "rows": rows, "summary": _collect(rows), "ray_floor": floor}
    _write(report)
    print((RESULTS / "first_answer.md").read_text())


if __name__ == "__main__":
    main()
