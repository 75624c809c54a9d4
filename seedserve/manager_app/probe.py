"""Runs the artifact probe in a child process with a timeout and a memory cap."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from seedserve.codecs import Manifest
from seedserve.errors import InvalidArtifact

__all__ = ["probe_artifact"]


async def probe_artifact(
    path: Path, fmt: str, manifest: Manifest, *, timeout_s: float = 120.0, max_memory_bytes: int = 16 * 2**30
) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """Load and run the artifact once on a sample, and profile it; returns
    output shapes by name and the profile (or ``{"error": ...}``)."""
    process = await asyncio.create_subprocess_exec(
        # The child caps its own memory: preexec_fn is unsafe in a threaded server.
        sys.executable, "-m", "seedserve.manager_app._probe", str(path), fmt, str(max_memory_bytes),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(manifest.model_dump_json().encode()), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise InvalidArtifact(
            f"loading and running the model on a sample took over {timeout_s:.0f} s", input="artifact"
        ) from None
    lines = stdout.decode(errors="replace").strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = stderr.decode(errors="replace").strip()[-1000:]
        raise InvalidArtifact(
            f"the model crashed while loading (exit code {process.returncode}): {tail}", input="artifact"
        ) from None
    if not report["ok"]:
        raise InvalidArtifact(f"the model failed on a sample input: {report['error']}", input=report.get("input") or "artifact")
    return dict(report["outputs"]), dict(report.get("profile") or {"error": "not profiled"})
