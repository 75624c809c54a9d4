"""The long fuzz run of the manager's API: schemathesis over the manager's own
OpenAPI document, N generated cases per operation (CI runs 20).

    .venv/bin/python -m benchmarks.fuzz [--examples 1000]

Runs ``tests/manager/test_fuzz_api.py`` (the manager on real uvicorn over
real HTTP, on the real embedded database server) with
``SEEDSERVE_FUZZ_EXAMPLES=N`` and writes benchmarks/results/fuzz.{json,md}:
per operation, whether every answer matched the document and none was a 5xx.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TEST = "tests/manager/test_fuzz_api.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="generated cases per operation")
    args = parser.parse_args()
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", TEST, "-v", "-p", "no:cacheprovider", "--timeout", "0"],
        cwd=ROOT, env={**os.environ, "SEEDSERVE_FUZZ_EXAMPLES": str(args.examples)},
        capture_output=True, text=True,
    )
    elapsed = time.monotonic() - start
    rows = [{"operation": m[1], "result": m[2]}
            for m in re.finditer(r"test_\w+\[(.+?)\] (PASSED|FAILED|ERROR)", done.stdout)]
    result = {"examples_per_operation": args.examples, "seconds": round(elapsed), "exit_code": done.returncode,
              "operations": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fuzz.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Fuzzing the manager's API: {args.examples} generated cases per operation",
        "",
        f"`.venv/bin/python -m benchmarks.fuzz --examples {args.examples}`, {elapsed / 60:.0f} min, "
        f"pytest exit code {done.returncode}. Checks: no 5xx; status code, content type and body as documented.",
        "",
        "| operation | result |",
        "|---|---|",
        *(f"| `{r['operation']}` | {r['result']} |" for r in rows),
    ]
    (RESULTS / "fuzz.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if done.returncode != 0:
        print(done.stdout[-20000:])
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
