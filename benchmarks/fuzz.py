"""The long fuzz runs: schemathesis over the manager's or the master's own
OpenAPI document, N generated cases per operation (CI runs 20).

    .venv/bin/python -m benchmarks.fuzz [--target manager|master] [--examples 1000]

``manager`` runs ``tests/manager/test_fuzz_api.py`` (the manager on real
uvicorn over real HTTP, on the real embedded database server) and writes
benchmarks/results/fuzz.{json,md}; ``master`` runs
``tests/integration/test_fuzz_master.py`` (the real `seedserve up`: the master
and a registered model's replica, with its key) and writes
fuzz_master.{json,md}. Each with ``SEEDSERVE_FUZZ_EXAMPLES=N``: per operation,
the cases sent and the answers' statuses (a case whose answer broke a check
counts as failed: a 5xx, or anything the document does not say). The master
run lifts the wrong-key limit, or after 100 cases without the key (which
schemathesis sends to check that authentication is enforced) every answer
would be a 429.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TARGETS = {
    "manager": ("tests/manager/test_fuzz_api.py", "fuzz", {}),
    "master": ("tests/integration/test_fuzz_master.py", "fuzz_master", {"SEEDSERVE_WRONG_KEYS_PER_MINUTE": "1000000"}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="generated cases per operation")
    parser.add_argument("--target", choices=list(TARGETS), default="manager")
    args = parser.parse_args()
    test, stem, env = TARGETS[args.target]
    start = time.monotonic()
    with tempfile.NamedTemporaryFile("r", suffix=".log") as report:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", test, "-q", "-p", "no:cacheprovider", "--timeout", "0"],
            cwd=ROOT, capture_output=True, text=True,
            env={**os.environ, **env, "SEEDSERVE_FUZZ_EXAMPLES": str(args.examples),
                 "SEEDSERVE_FUZZ_REPORT": report.name},
        )
        cases = [line.rsplit(" ", 1) for line in report.read().splitlines()]
    elapsed = time.monotonic() - start
    by_operation: dict[str, collections.Counter[str]] = {}
    for operation, outcome in cases:
        by_operation.setdefault(operation, collections.Counter())[outcome] += 1
    rows = [{"operation": operation, "cases": sum(counts.values()), "answers": dict(sorted(counts.items()))}
            for operation, counts in by_operation.items()]
    result = {"examples_per_operation": args.examples, "seconds": round(elapsed), "exit_code": done.returncode,
              "operations": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Fuzzing the {args.target}'s API: {args.examples} generated cases per operation",
        "",
        f"`.venv/bin/python -m benchmarks.fuzz --target {args.target} --examples {args.examples}`, "
        f"{elapsed / 60:.0f} min, pytest exit code {done.returncode}. "
        "Checks: no 5xx; status code, content type and body as documented.",
        "",
        "| operation | cases | answers (status: cases; 405s are undeclared methods tried on the path; "
        "failed = a check failed) |",
        "|---|---:|---|",
        *(f"| `{r['operation']}` | {r['cases']:,} | "
          + ", ".join(f"{status}: {n:,}" for status, n in r["answers"].items()) + " |" for r in rows),
    ]
    if stateful := [r for r in rows if r["operation"].startswith("stateful ")]:
        lines += ["", f"Rows marked stateful are calls inside sequences of up to 6 chained operations: "
                      f"{sum(r['cases'] for r in stateful):,} calls."]
    failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    if failed:
        lines += ["", "What failed (pytest's summary):", "", *(f"- `{line[:300]}`" for line in failed)]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if done.returncode != 0:
        print(done.stdout[-20000:])
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
