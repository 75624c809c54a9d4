"""What the schemathesis tests of both OpenAPI documents share: which checks
a generated case is exempt from, and the per-case record that
``benchmarks/fuzz.py`` counts."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from typing import Any

from schemathesis import Case
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

EXAMPLES = int(os.environ.get("SEEDSERVE_FUZZ_EXAMPLES", "20"))
REPORT = os.environ.get("SEEDSERVE_FUZZ_REPORT")


def exempt_checks(case: Case, *, replaced: Collection[Any],
                  content_dependent: Collection[tuple[str, str]]) -> list[Callable[..., Any]]:
    """Checks that cannot hold for ``case``: "invalid data is rejected" when
    every invalid part is one the test ``replaced`` with a valid value, and
    "valid data is accepted" on operations whose success depends on more
    than the schema says."""
    exempt: list[Callable[..., Any]] = []
    negative = {location for location, info in case.meta.components.items() if info.mode.is_negative}
    if negative and negative <= set(replaced):
        exempt.append(negative_data_rejection)
    if (case.method.upper(), case.operation.path) in content_dependent:
        exempt.append(positive_data_acceptance)
    return exempt


def record(case: Case, outcome: str, prefix: str = "") -> None:
    """One line per case for ``benchmarks/fuzz.py``: operation and answer."""
    if REPORT:
        with open(REPORT, "a") as out:
            out.write(f"{prefix}{case.operation.method.upper()} {case.operation.path} {outcome}\n")
