"""The ``seedserve`` command's entry point.

The command line is part of the server install (``seedserve[server]``); in a
client-only install its packages are missing, and it says so instead of
printing a traceback.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command line, or exit 1 naming the install it needs."""
    try:
        from seedserve.cluster.cli import main as cli
    except ModuleNotFoundError as exc:
        if (exc.name or "seedserve").split(".")[0] == "seedserve":
            raise
        print(f"seedserve: the command line is part of the server install and {exc.name!r} is missing; "
              "install it with: pip install 'seedserve[server]'", file=sys.stderr)
        raise SystemExit(1) from exc
    cli()
