"""Does a wrong key's answer take longer the more of the right key it matches?

    .venv/bin/python -m benchmarks.key_timing [--rounds 2000]

Two measurements, written to benchmarks/results/key_timing.{json,md}:
  * in process: ``key_matches`` (SHA-256 of the key, then a constant-time
    comparison with every stored hash) for a key sharing nothing with the
    right one, one sharing all but its last character, and the right key;
  * over HTTP, on the real system: the same three classes of key sent to a
    registered model, interleaved round by round so drift hits all alike
    (the replica's wrong-key limit is raised for the run, or it would answer
    429 after 100).
A timing leak would show as "all but one" being slower than "nothing" by more
than the spread between runs of the same class. Medians and the 95 % interval
of the median difference (bootstrap) are reported.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks._system import seedserve_up
from seedserve.client import Client, ManagerClient
from seedserve.registry import hash_key, key_matches, new_key

RESULTS = Path(__file__).resolve().parent / "results"
MANIFEST = {"name": "timing", "inputs": [{"name": "x", "kind": "tensor", "dtype": "float32", "shape": [-1, 4]}],
            "outputs": [{"name": "y"}]}


def _classes(key: str) -> dict[str, str]:
    last = "A" if key[-1] != "A" else "B"
    return {"nothing matches": "sk_" + new_key()[3:], "all but the last character": key[:-1] + last, "right key": key}


def _median_difference(a: list[float], b: list[float], rng: random.Random) -> tuple[float, float, float]:
    """Median of b minus median of a, with a 95 % bootstrap interval."""
    draws = sorted(statistics.median(rng.choices(b, k=len(b))) - statistics.median(rng.choices(a, k=len(a)))
                   for _ in range(1000))
    return statistics.median(b) - statistics.median(a), draws[25], draws[974]


def in_process(n: int) -> dict[str, float]:
    key = new_key()
    hashes = [hash_key(new_key()) for _ in range(3)] + [hash_key(key)]
    return {what: min(timeit.repeat(lambda k=k: key_matches(k, hashes), number=n, repeat=5)) / n * 1e9
            for what, k in _classes(key).items()}


def over_http(rounds: int, logs: Path) -> dict[str, Any]:
    with seedserve_up(logs, port_base=28500, env={"SEEDSERVE_WRONG_KEYS_PER_MINUTE": str(10 * rounds)}) as running:
        import torch

        model = torch.jit.script(torch.nn.Linear(4, 2).eval())
        model.save(str(logs / "m.pt"))
        with ManagerClient(running.manager_url, running.token) as manager:
            key = manager.register(logs / "m.pt", {**MANIFEST, "scaling": {"max_replicas": 1}})
        with Client(running.master_url, key) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    client.predict("timing", x=[[0.0] * 4])
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
        classes = _classes(key)
        times: dict[str, list[float]] = {what: [] for what in classes}
        url = f"{running.master_url}/models/timing/predict"
        body = json.dumps({"x": [[0.0] * 4]}).encode()
        order = list(classes)
        with httpx.Client(timeout=30) as http:
            for _ in range(rounds):
                random.shuffle(order)
                for what in order:
                    start = time.perf_counter()
                    answer = http.post(url, content=body, headers={"Authorization": f"Bearer {classes[what]}",
                                                                   "Content-Type": "application/json"})
                    times[what].append((time.perf_counter() - start) * 1e6)
                    expected = 200 if what == "right key" else 401
                    assert answer.status_code == expected, (what, answer.status_code, answer.text)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    rng = random.Random(0)
    local = in_process(20_000)
    http = over_http(args.rounds, Path(tempfile.mkdtemp(prefix="seedserve-key-timing-")))
    wrong, near = http["nothing matches"], http["all but the last character"]
    diff, low, high = _median_difference(wrong, near, rng)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "in_process_ns": local,
        "http_us": {what: {"median": statistics.median(v), "p10": float(np.percentile(v, 10)),
                           "p90": float(np.percentile(v, 90))} for what, v in http.items()},
        "rounds": args.rounds,
        "near_minus_nothing_us": {"median": diff, "ci95": [low, high]},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "key_timing.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Wrong-key timing ({report['date']}, {args.rounds} interleaved rounds)",
        "",
        "| key sent | `key_matches` in process (ns) | over HTTP, median (µs) | p10-p90 (µs) |",
        "|---|---:|---:|---:|",
        *(f"| {what} | {local[what]:,.0f} | {report['http_us'][what]['median']:,.0f} | "
          f"{report['http_us'][what]['p10']:,.0f}-{report['http_us'][what]['p90']:,.0f} |" for what in local),
        "",
        f"Over HTTP, 'all but the last character' minus 'nothing matches': {diff:+.1f} µs "
        f"(95 % interval {low:+.1f} to {high:+.1f} µs).",
    ]
    (RESULTS / "key_timing.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
