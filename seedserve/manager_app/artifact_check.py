"""Test-loads an uploaded artifact in the sandbox (:mod:`seedserve.sandbox`),
with a timeout, and checks what comes back: the report is written by
code of the uploader's, so it is parsed as untrusted data."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
from dataclasses import replace
from pathlib import Path
from typing import Any

from seedserve.codecs import Manifest
from seedserve.errors import InvalidArtifact
from seedserve.sandbox import SandboxLimits, launch

__all__ = ["check_artifact"]

_CHUNK = 2**20
#: How much of the child's stdout (its report, the last line: a profile lists
#: every op, megabytes for a deep model) and of its stderr the manager keeps.
_KEEP_REPORT = 64 * 2**20
_KEEP_STDERR = 64 * 2**10


async def _feed(stdin: asyncio.StreamWriter, header: dict[str, Any], path: Path) -> None:
    """One frame (see :mod:`seedserve.sandbox._frames`): the header, then the file in chunks."""
    body = json.dumps(header).encode()
    with contextlib.suppress(ConnectionError):  # the child died early: its exit status says why
        stdin.write(struct.pack("<QQ", len(body), path.stat().st_size) + body)
        with path.open("rb") as artifact:
            while chunk := artifact.read(_CHUNK):
                stdin.write(chunk)
                await stdin.drain()
        stdin.close()


async def _tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    kept = bytearray()
    while chunk := await stream.read(_CHUNK):
        kept += chunk
        del kept[:-keep]
    return bytes(kept)


async def check_artifact(
    path: Path, fmt: str, manifest: Manifest, *, timeout_s: float = 120.0, limits: SandboxLimits | None = None
) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """Load and run the artifact once on a sample, and profile it, in a new
    sandbox; returns output shapes by name and the profile (or ``{"error": ...}``)."""
    # CPU seconds: what every core could burn within the wall-clock timeout (which is the real bound).
    limits = replace(limits or SandboxLimits(), cpu_seconds=int(timeout_s * (os.cpu_count() or 1)) + 1)
    sandbox = launch(["-m", "seedserve.manager_app._artifact_check_child"], limits)
    try:
        process = await asyncio.create_subprocess_exec(
            *sandbox.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={"PATH": "/usr/bin:/bin"},
        )
        assert process.stdin and process.stdout and process.stderr
        header = {"format": fmt, "manifest": manifest.model_dump(mode="json")}
        try:
            _, stdout, stderr, _ = await asyncio.wait_for(asyncio.gather(
                _feed(process.stdin, header, path), _tail(process.stdout, _KEEP_REPORT),
                _tail(process.stderr, _KEEP_STDERR), process.wait()
            ), timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise InvalidArtifact(
                f"loading and running the model on a sample took over {timeout_s:.0f} s", input="artifact"
            ) from None
        over_memory = sandbox.hit_memory_limit()
    finally:
        sandbox.cleanup()
    return _report(stdout, stderr, process.returncode, over_memory, limits)


def _report(stdout: bytes, stderr: bytes, returncode: int | None, over_memory: bool,
            limits: SandboxLimits) -> tuple[dict[str, list[int]], dict[str, Any]]:
    lines = stdout.decode(errors="replace").strip().splitlines()
    try:
        report = json.loads(lines[-1])
        if not isinstance(report, dict) or not isinstance(report.get("ok"), bool):
            raise ValueError("not a report")
    except (IndexError, ValueError):
        if over_memory:
            raise InvalidArtifact(
                f"the model used more than its memory limit of {limits.memory_bytes / 2**30:g} GiB while loading "
                "and was stopped; make it smaller", input="artifact",
            ) from None
        tail = stderr.decode(errors="replace").strip()[-1000:]
        raise InvalidArtifact(
            f"the model crashed while loading (exit code {returncode}): {tail}", input="artifact"
        ) from None
    if not report["ok"]:
        where = report.get("input") if isinstance(report.get("input"), str) else "artifact"
        raise InvalidArtifact(f"the model failed on a sample input: {str(report.get('error'))[:4000]}", input=where)
    outputs = report.get("outputs")
    if not isinstance(outputs, dict) or not all(
        isinstance(shape, list) and all(isinstance(n, int) for n in shape) for shape in outputs.values()
    ):
        raise InvalidArtifact("the test-load reported output shapes that are not lists of integers", input="artifact")
    return {str(k): list(v) for k, v in outputs.items()}, _profile(report.get("profile"))


def _profile(value: Any) -> dict[str, Any]:
    """The reported profile if it is one, else the reason there is none."""
    from pydantic import ValidationError

    from seedserve.profiler.profile import ModelProfile

    if isinstance(value, dict) and set(value) == {"error"}:
        return {"error": str(value["error"])[:500]}
    try:
        return ModelProfile.model_validate(value).model_dump(mode="json")
    except ValidationError as exc:
        return {"error": f"the test-load reported no valid profile ({exc.error_count()} errors)"}
