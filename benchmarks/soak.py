"""Soak: two models at half the measured maximum throughput, for ten minutes.

    .venv/bin/python -m benchmarks.soak [--minutes 10] [--fraction 0.5]

Starts the real `seedserve up` and registers the tiny MLP and the small CNN of
``benchmarks/_model.py`` (one replica each). Then:

  1. maximum: wrk drives both models at once, 16 connections each; the rate
     each model reached is its share of the system's maximum;
  2. pacing: wrk keeps 8 connections per model, each waiting a think time
     before each request; a short probe measures the latency to subtract, so
     that each model receives about ``fraction`` of its maximum;
  3. soak: both models at that rate for ``--minutes``, while the memory of
     every process ``seedserve up`` started (Ray's included) is sampled every
     10 s: resident set size per process and proportional set size in total.

It passes when no query failed (any non-2xx answer, socket error or answer
slower than 5 s counts) and memory grew less than 10 % from the first minute
to the last, both in total and in each model replica, and the replicas that
started the soak are the ones that end it (a restarted replica would hide a
leak). Writes benchmarks/results/soak.{json,md}; exits 1 when it fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._model import MODELS, WORKLOADS
from benchmarks._system import seedserve_up, tree_pids
from benchmarks._wrk import Result, run_wrk

RESULTS = Path(__file__).resolve().parent / "results"
MB = 2**20
#: An answer slower than this counts as an error.
TIMEOUT_S = 5.0
#: Memory may grow this much from the first minute to the last.
GROWTH_LIMIT = 0.10
SOAK_CONNECTIONS = 8


@dataclass
class Sample:
    at_s: float
    total_pss: int
    rss: dict[str, int]  # "<pid> <process title>" -> bytes


@dataclass
class Report:
    fraction: float
    seconds: int
    maximum: dict[str, Result] = field(default_factory=dict)
    target_per_s: dict[str, float] = field(default_factory=dict)
    think_ms: dict[str, float] = field(default_factory=dict)
    soak: dict[str, Result] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    replicas_before: list[str] = field(default_factory=list)
    replicas_after: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.soak.values())

    def growth(self) -> dict[str, float]:
        """Growth from the first to the last minute (or tenth of the run, when
        shorter): of the total PSS, and of the RSS of each process alive throughout."""
        window = max(1, min(len(self.samples) // 10, round(60 / max(1.0, self._interval_s()))))
        first, last = self.samples[:window], self.samples[-window:]

        def change(values: list[list[int]]) -> float:
            return statistics.median(values[1]) / statistics.median(values[0]) - 1

        growth = {"total (PSS)": change([[s.total_pss for s in first], [s.total_pss for s in last]])}
        for name in self.samples[0].rss:
            if all(name in s.rss for s in self.samples):
                growth[name] = change([[s.rss[name] for s in first], [s.rss[name] for s in last]])
        return growth

    def failures(self) -> list[str]:
        failures = [f"{name}: {r.errors} errors in {r.requests} queries" for name, r in self.soak.items() if r.errors]
        growth = self.growth()
        for name, value in growth.items():
            if (name == "total (PSS)" or _soaked(name)) and value >= GROWTH_LIMIT:
                failures.append(f"{name}: memory grew {value:.1%}")
        if sorted(self.replicas_before) != sorted(self.replicas_after):
            failures.append(f"replicas changed during the soak: {self.replicas_before} -> {self.replicas_after}")
        return failures

    def _interval_s(self) -> float:
        if len(self.samples) < 2:
            return 10.0
        return (self.samples[-1].at_s - self.samples[0].at_s) / (len(self.samples) - 1)


def memory_sample(root: int, started: float) -> Sample:
    """RSS of every process under ``root``, and their PSS in total."""
    total, rss = 0, {}
    for pid in tree_pids(root):
        try:
            status = _kb_fields(Path(f"/proc/{pid}/status").read_text(), "VmRSS:")
            pss = _kb_fields(Path(f"/proc/{pid}/smaps_rollup").read_text(), "Pss:")
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
        total += pss
        rss[f"{pid} {title.strip()[:70]}"] = status
    return Sample(time.monotonic() - started, total, rss)


def _kb_fields(text: str, prefix: str) -> int:
    for line in text.splitlines():
        if line.startswith(prefix):
            return int(line.split()[1]) * 1024
    return 0


def _both(master_url: str, keys: dict[str, str], **wrk: Any) -> dict[str, Result]:
    """wrk on both models at once; per model, its own options from ``wrk``'s per-model dicts."""
    results: dict[str, Result] = {}

    def drive(name: str) -> None:
        workload = WORKLOADS[name]
        options = {k: (v[name] if isinstance(v, dict) else v) for k, v in wrk.items()}
        results[name] = run_wrk(master_url + workload.path, workload.body,
                                {"Authorization": f"Bearer {keys[name]}"}, timeout_s=TIMEOUT_S, **options)

    threads = [threading.Thread(target=drive, args=(name,)) for name in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def soak(master_url: str, keys: dict[str, str], root_pid: int, *, seconds: int, fraction: float = 0.5,
         maximum_s: int = 10, sample_s: float = 10.0, log: Any = print) -> Report:
    """Measure the maximum of the two models together, then hold ``fraction``
    of it for ``seconds`` while sampling memory. ``keys``: model (mlp, cnn) -> key."""
    report = Report(fraction, seconds)
    report.maximum = _both(master_url, keys, concurrency=16, seconds=maximum_s)
    for name, result in report.maximum.items():
        log(f"maximum {name}: {result.requests_per_s:,.0f} req/s (p99 {result.p99_ms:.1f} ms, {result.errors} errors)")
        report.target_per_s[name] = fraction * result.requests_per_s
    # Each connection's cycle is think + latency; probe the latency at about the target rate.
    cycle_ms = {name: SOAK_CONNECTIONS * 1000 / rate for name, rate in report.target_per_s.items()}
    probe = _both(master_url, keys, concurrency=SOAK_CONNECTIONS, seconds=max(5, maximum_s // 2), think_ms=cycle_ms)
    for name, result in probe.items():
        latency_ms = SOAK_CONNECTIONS * 1000 / result.requests_per_s - cycle_ms[name]
        report.think_ms[name] = max(1.0, cycle_ms[name] - max(0.0, latency_ms))
        log(f"pacing {name}: target {report.target_per_s[name]:,.0f} req/s, think {report.think_ms[name]:.0f} ms")

    report.replicas_before = _replicas(root_pid)
    started = time.monotonic()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            report.samples.append(memory_sample(root_pid, started))
            done.wait(sample_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        report.soak = _both(master_url, keys, concurrency=SOAK_CONNECTIONS, seconds=seconds,
                            think_ms=report.think_ms)
    finally:
        done.set()
        sampler.join()
    report.samples.append(memory_sample(root_pid, started))
    report.replicas_after = _replicas(root_pid)
    for name, result in report.soak.items():
        log(f"soak {name}: {result.requests:,} queries, {result.requests_per_s:,.0f} req/s "
            f"({result.requests_per_s / report.maximum[name].requests_per_s:.0%} of maximum), "
            f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, {result.errors} errors")
    return report


def _soaked(process: str) -> bool:
    """Whether ``process`` (pid and title) is a replica of a soaked model."""
    return any(f"ServeReplica:model-{w.manifest['name']}:" in process for w in WORKLOADS.values())


def _replicas(root: int) -> list[str]:
    return sorted(name for name in memory_sample(root, 0).rss if _soaked(name))


def _write(report: Report) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count()}
    growth = report.growth()
    (RESULTS / "soak.json").write_text(json.dumps({"meta": meta, **asdict(report), "growth": growth,
                                                   "failures": report.failures()}, indent=2) + "\n")
    lines = [f"Measured {meta['date']} on {meta['cpus']} CPUs: the real `seedserve up`, one replica per model; "
             f"maximum with wrk at 16 connections on both models at once, then {report.seconds / 60:g} min at "
             f"{report.fraction:.0%} of it (8 paced connections per model; an answer slower than {TIMEOUT_S:g} s "
             "counts as an error).", "",
             "| model | maximum req/s (both at once) | soak req/s | share of maximum | queries | errors "
             "| p50 ms | p99 ms |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, result in report.soak.items():
        peak = report.maximum[name].requests_per_s
        lines.append(f"| {name} | {peak:,.0f} | {result.requests_per_s:,.0f} | {result.requests_per_s / peak:.0%} "
                     f"| {result.requests:,} | {result.errors} | {result.p50_ms:.1f} | {result.p99_ms:.1f} |")
    first, last = report.samples[0], report.samples[-1]
    lines += ["", f"Memory, {len(report.samples)} samples; growth is the median of the last minute over the "
              "median of the first (the limit is 10 %):", "",
              "| process | first sample MB | last sample MB | growth |", "|---|---:|---:|---:|",
              f"| everything `seedserve up` started (PSS) | {first.total_pss / MB:,.0f} | {last.total_pss / MB:,.0f} "
              f"| {growth['total (PSS)']:+.1%} |"]
    largest = sorted((n for n in growth if n != "total (PSS)"), key=lambda n: -last.rss.get(n, 0))[:10]
    for name in largest:
        title = name.split(" ", 1)[1].replace("|", "/")
        lines.append(f"| {title} (RSS) | {first.rss[name] / MB:,.0f} | {last.rss[name] / MB:,.0f} "
                     f"| {growth[name]:+.1%} |")
    failures = report.failures()
    lines += ["", "Result: " + ("passed: no errors, no growth past 10 %, the same replicas throughout."
                                 if not failures else "FAILED: " + "; ".join(failures))]
    (RESULTS / "soak.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--fraction", type=float, default=0.5, help="share of the measured maximum to hold")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="seedserve-soak-"))
    with seedserve_up(logs, port_base=29000) as running:
        import torch

        from seedserve.client import ManagerClient

        keys = {}
        with ManagerClient(running.manager_url, running.token) as manager:
            for name, workload in WORKLOADS.items():
                artifact = logs / f"{name}.pt"
                torch.jit.script(MODELS[name]()).save(str(artifact))
                keys[name] = manager.register(artifact, workload.manifest)
        wait_answering(running.master_url, keys)
        run_wrk(running.master_url + WORKLOADS["mlp"].path, WORKLOADS["mlp"].body,
                {"Authorization": f"Bearer {keys['mlp']}"}, concurrency=4, seconds=3)  # warm-up
        report = soak(running.master_url, keys, running.pid, seconds=round(args.minutes * 60), fraction=args.fraction)
    _write(report)
    if report.failures():
        raise SystemExit(1)


def wait_answering(master_url: str, keys: dict[str, str], timeout_s: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    for name, key in keys.items():
        workload = WORKLOADS[name]
        while httpx.post(master_url + workload.path, content=workload.body, timeout=30,
                         headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
                         ).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} never answered")
            time.sleep(0.5)


if __name__ == "__main__":
    main()
