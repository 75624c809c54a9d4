"""Test-loads an uploaded artifact in the sandbox (:mod:`seedserve.sandbox`),
with a timeout, and checks what comes back: the report is written by
code of the uploader's, so it is parsed as untrusted data.

A test-load child spends most of its time importing torch and the profiler
(seconds) before it reads the artifact; :class:`SpareSandbox` starts one
child ahead of the next registration so that registration does not wait
for those imports. Each child still test-loads one artifact only, in a
sandbox of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from seedserve.codecs import Manifest
from seedserve.errors import InvalidArtifact
from seedserve.sandbox import Launch, SandboxLimits, launch
from seedserve.sandbox._frames import SPARE_READY

__all__ = ["SpareSandbox", "check_artifact"]

logger = logging.getLogger("seedserve.manager.artifact_check")

#: Wall-clock seconds a test-load may take, from the artifact's first byte to the report.
TIMEOUT_S = 120.0

#: The longest wait before another spare after spares in a row that failed.
_MAX_RETRY_S = 300.0

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


@dataclass
class _Child:
    """A test-load child started in its sandbox: it imports what it needs, then waits for its one frame."""

    sandbox: Launch
    process: asyncio.subprocess.Process

    def alive(self) -> bool:
        return self.process.returncode is None

    async def discard(self) -> None:
        try:
            if self.alive():
                self.process.kill()
                await self.process.wait()
        finally:  # cancelled while it exits too: the cgroup's removal kills what is left
            self.sandbox.cleanup()


def _test_load_limits(limits: SandboxLimits | None, timeout_s: float) -> SandboxLimits:
    # CPU seconds: what every core could burn within the wall-clock timeout (which is the real bound).
    return replace(limits or SandboxLimits(), cpu_seconds=int(timeout_s * (os.cpu_count() or 1)) + 1)


async def _start_child(limits: SandboxLimits, *, spare: bool = False) -> _Child:
    """A child in a new sandbox; a ``spare`` does its imports at the lowest CPU priority."""
    sandbox = launch(["-m", "seedserve.sandbox._test_load_child", *(["--spare"] if spare else [])], limits)
    try:
        process = await asyncio.create_subprocess_exec(
            *sandbox.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={"PATH": "/usr/bin:/bin"},
        )
    except BaseException:
        sandbox.cleanup()
        raise
    return _Child(sandbox, process)


async def check_artifact(
    path: Path, fmt: str, manifest: Manifest, *, timeout_s: float = TIMEOUT_S, limits: SandboxLimits | None = None
) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """Load and run the artifact once on a sample, and profile it, in a new
    sandbox; returns output shapes by name and the profile (or ``{"error": ...}``)."""
    limits = _test_load_limits(limits, timeout_s)
    return await _test_load(await _start_child(limits), path, fmt, manifest, timeout_s, limits)


async def _test_load(child: _Child, path: Path, fmt: str, manifest: Manifest, timeout_s: float,
                     limits: SandboxLimits) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """Feed ``child`` the artifact and read its report; the child and its sandbox are gone afterwards."""
    process = child.process
    try:
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
        over_memory = child.sandbox.hit_memory_limit()
    finally:
        await child.discard()
    return _report(stdout, stderr, process.returncode, over_memory, limits)


class SpareSandbox:
    """Test-loads artifacts with one child kept started ahead, in its own
    sandbox, so that a registration finds the child's imports done.

    The first spare is started ``first_delay_s`` after :meth:`start`, the
    next ones ``delay_s`` after each test-load, and never while one runs.
    A spare that is not ready within the timeout, or that dies while it
    waits, is replaced after ``retry_s``, doubled after each failure in a
    row up to :data:`_MAX_RETRY_S`.
    Its imports take seconds of CPU, which the system starting, a test-load
    or the replica a registration deploys needs more, so it does them at
    the lowest CPU priority (see ``seedserve.sandbox._test_load_child``): on a busy node
    it takes only what is left over, and a registration soon after
    ``seedserve up`` finds it ready. It is offered only once it says its
    imports are done; a registration that finds none ready starts a child
    of its own, as :func:`check_artifact` does. The spare holds no artifact and no secret
    (its environment is the sandbox's allow-list); it exits when the
    manager closes its stdin, or is killed by :meth:`aclose`."""

    def __init__(self, limits: SandboxLimits | None = None, *, timeout_s: float = TIMEOUT_S,
                 delay_s: float = 0.5, first_delay_s: float = 1.0, retry_s: float = 5.0,
                 keep_spare: bool = True) -> None:
        """``keep_spare`` False: every test-load starts its child then (no process waits in between)."""
        self._limits = _test_load_limits(limits, timeout_s)
        self._timeout_s = timeout_s
        self._delay_s = delay_s
        self._first_delay_s = first_delay_s
        self._retry_s = retry_s
        self._failures = 0  # spares in a row that were not ready or died waiting
        self._spare: _Child | None = None
        self._watch: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._running = 0  # test-loads in progress
        self._closed = not keep_spare

    @property
    def ready(self) -> bool:
        """Whether a spare waits, its imports done, for the next test-load."""
        return self._spare is not None and self._spare.alive()

    def start(self) -> None:
        """Schedule the first spare (within the running event loop)."""
        self._schedule(self._first_delay_s)

    def _schedule(self, delay_s: float | None = None) -> None:
        if not self._closed and self._starting is None and self._spare is None:
            wait = self._delay_s if delay_s is None else delay_s
            self._starting = asyncio.get_running_loop().create_task(self._start_later(wait))

    async def _start_later(self, delay_s: float) -> None:
        failed = True
        try:
            await asyncio.sleep(delay_s)
            if self._running:  # the last test-load to finish schedules it again
                failed = False
                return
            child = await _start_child(self._limits, spare=True)
            try:
                assert child.process.stdout is not None
                line = await asyncio.wait_for(child.process.stdout.readline(), self._timeout_s)
                ready = line.decode(errors="replace").strip() == SPARE_READY
            except TimeoutError:  # starved on a busy node: registrations start their own meanwhile
                logger.warning("a spare test-load sandbox was not ready within %.0f s", self._timeout_s)
                ready = False
            except BaseException:
                await child.discard()
                raise
            failed = not ready
            if self._closed or not ready:
                await child.discard()
            else:
                self._spare = child
                self._failures = 0
                self._watch = asyncio.get_running_loop().create_task(self._watch_spare(child))
        except asyncio.CancelledError:
            raise
        except Exception:  # the sandbox is unavailable now: a registration starts its own and says why
            logger.warning("could not start a spare test-load sandbox", exc_info=True)
        finally:
            self._starting = None
        if failed:
            self._retry()

    def _retry(self) -> None:
        """Another spare after a failed one, later after each failure in a row."""
        self._failures += 1
        self._schedule(min(self._retry_s * 2 ** (self._failures - 1), _MAX_RETRY_S))

    async def _watch_spare(self, child: _Child) -> None:
        """Replace the waiting spare ``child`` if it dies before a test-load takes it."""
        await child.process.wait()
        if self._spare is child:
            self._spare = None
            logger.warning("the spare test-load sandbox exited (code %s) before a test-load; starting another",
                           child.process.returncode)
            await child.discard()
            self._retry()

    async def _take(self) -> _Child:
        spare, self._spare = self._spare, None
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if spare is not None and spare.alive():
            return spare
        if spare is not None:
            await spare.discard()
        return await _start_child(self._limits)

    async def check(self, path: Path, fmt: str, manifest: Manifest) -> tuple[dict[str, list[int]], dict[str, Any]]:
        """As :func:`check_artifact`, in the spare child if one is ready."""
        self._running += 1
        try:
            return await _test_load(await self._take(), path, fmt, manifest, self._timeout_s, self._limits)
        finally:
            self._running -= 1
            self._schedule()

    async def aclose(self) -> None:
        """Stop the spare (and one being started)."""
        self._closed = True
        for task in (self._starting, self._watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._spare is not None:
            await self._spare.discard()
            self._spare = None


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
