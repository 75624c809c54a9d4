"""Whether this Python environment can run Ray Serve, checked before Ray starts.

When Ray's Serve module cannot be imported (a gRPC or protobuf package that
another install replaced, say), Ray's head still starts but its dashboard
never serves Serve's REST API, and the cause is written only to Ray's
dashboard log. A child process that imports what the head and seedserve's
gRPC service import finds it in a few seconds, with its traceback.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

__all__ = ["BrokenEnvironment", "SERVE_IMPORTS", "check_serve_imports", "serve_import_problem"]

#: What the Ray head (its dashboard's Serve module, Serve's proxy with its
#: gRPC reflection) and seedserve's gRPC service (its stubs) import.
SERVE_IMPORTS = ("ray.serve", "ray.serve._private.proxy", "seedserve.grpc.server")

#: The last lines of the child's traceback that are shown.
_TRACEBACK_LINES = 8


class BrokenEnvironment(Exception):
    """A package seedserve needs cannot be imported here."""


def serve_import_problem(python: str = sys.executable, env: Mapping[str, str] | None = None) -> str | None:
    """The end of the traceback of importing :data:`SERVE_IMPORTS` with
    ``python``, or None when they import."""
    code = "; ".join(f"import {module}" for module in SERVE_IMPORTS)
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300,
                            env=dict(env) if env is not None else None)
    if result.returncode == 0:
        return None
    lines = result.stderr.strip().splitlines()
    return "\n".join(lines[-_TRACEBACK_LINES:]) or f"exit code {result.returncode}"


def check_serve_imports(python: str = sys.executable, env: Mapping[str, str] | None = None) -> None:
    """Raise :class:`BrokenEnvironment` with the cause and the fix if Ray Serve cannot load."""
    problem = serve_import_problem(python, env)
    if problem is None:
        return
    raise BrokenEnvironment(
        f"Ray Serve cannot be imported by {python}, so Ray's dashboard would never serve Serve's API:\n"
        f"{problem}\n"
        "Reinstall seedserve's pinned dependencies (`pip install -e '.[server]'` in the checkout, or "
        "`bash install.sh`): protobuf < 7 with grpcio-reflection 1.81, the set that tritonclient[grpc] also "
        "accepts (docs/grpc.md)."
    )
