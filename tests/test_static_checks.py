"""The static checks, run as part of the suite (and so by `.ci/run`):
``mypy --strict seedserve`` and ``ruff check`` over the whole tree, with the
settings in pyproject.toml. A failure prints the checker's own report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_mypy_strict_reports_no_error_in_seedserve() -> None:
    result = _run(str(BIN / "mypy"), "--strict", "seedserve")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_ruff_reports_nothing_in_the_tree() -> None:
    result = _run(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr
