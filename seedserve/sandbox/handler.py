"""A handler package served from a sandboxed process (see :mod:`.worker`).

The replica keeps one sandboxed process per handler model and calls it
over a pipe: decoded inputs out, named outputs back, as raw array bytes
under a JSON header. What comes back was written by the uploader's code,
so every answer is checked (sizes, dtypes, the declared output names)
before the replica touches it, and a process that misbehaves, dies or
overruns its time is killed; the next call starts a new one.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from seedserve.codecs import Decoded, Manifest
from seedserve.errors import HandlerError, InvalidArtifact
from seedserve.sandbox import Launch, SandboxLimits, launch
from seedserve.sandbox._frames import FrameError, arrays_from, pack_arrays, read_frame, write_frame

__all__ = ["SandboxedHandler"]

logger = logging.getLogger("seedserve.sandbox")

#: Largest answer (all outputs of one call) read back from the sandbox.
MAX_OUTPUT_BYTES = 1 << 30
#: Lines of a sandbox's stderr logged per minute; the rest is dropped.
_LOG_LINES_PER_MINUTE = 60


class _DeadlineReader:
    """A buffered ``read(n)`` on a pipe that gives up at a deadline (the frame
    reader's stream): one ``os.read`` usually brings a whole small frame."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self.deadline = 0.0

    def read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            wait = self.deadline - time.monotonic()
            if wait <= 0 or not select.select([self._fd], [], [], wait)[0]:
                raise TimeoutError
            chunk = os.read(self._fd, max(size - len(self._buffer), 1 << 16))
            if not chunk:
                break
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


def _log_stderr(stream: Any, name: str) -> None:
    """Log what the sandbox prints, at most :data:`_LOG_LINES_PER_MINUTE` lines a minute."""
    window, count = time.monotonic(), 0
    for line in iter(stream.readline, b""):
        if time.monotonic() - window > 60:
            window, count = time.monotonic(), 0
        count += 1
        if count <= _LOG_LINES_PER_MINUTE:
            logger.info("handler %s: %s", name, line.decode(errors="replace").rstrip()[:1000])


class SandboxedHandler:
    """Calls a handler package's ``predict`` in its sandbox; usable as a
    model by :func:`seedserve.runtime.run_model`."""

    def __init__(self, package: bytes, manifest: Manifest, limits: SandboxLimits | None = None, *,
                 load_timeout_s: float = 120.0, call_timeout_s: float = 30.0) -> None:
        self._package = package
        self._manifest = manifest
        self._limits = limits or SandboxLimits()
        self._load_timeout_s = load_timeout_s
        self._call_timeout_s = call_timeout_s
        self._outputs = [spec.name for spec in manifest.outputs]
        # One call at a time: the replica calls from its event loop and from its model thread.
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._sandbox: Launch | None = None
        self._start()

    def _start(self) -> None:
        self._sandbox = launch(["-m", "seedserve.sandbox.worker"], self._limits)
        self._process = subprocess.Popen(
            self._sandbox.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin"}, bufsize=0,
        )
        assert self._process.stdout is not None  # stdout=PIPE
        self._reader = _DeadlineReader(self._process.stdout.fileno())
        threading.Thread(target=_log_stderr, args=(self._process.stderr, self._manifest.name), daemon=True).start()
        header, _ = self._exchange({"manifest": self._manifest.model_dump(mode="json")}, self._package,
                                   self._load_timeout_s, loading=True)
        if not header.get("ok"):
            self.close()
            raise InvalidArtifact(f"the handler failed while loading: {str(header.get('error'))[:4000]}",
                                  input="artifact")

    def _exchange(self, header: Mapping[str, Any], payload: bytes, timeout_s: float, *,
                  loading: bool = False) -> tuple[dict[str, Any], bytes]:
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        try:
            write_frame(process.stdin, header, payload)
            self._reader.deadline = time.monotonic() + timeout_s
            return read_frame(self._reader, MAX_OUTPUT_BYTES)
        except (OSError, FrameError, TimeoutError) as exc:
            reason = self._failure(exc, timeout_s)
            self.close()
            raise (InvalidArtifact(f"the handler failed while loading: {reason}", input="artifact") if loading
                   else HandlerError(f"the handler's process failed: {reason}")) from None

    def _failure(self, exc: BaseException, timeout_s: float) -> str:
        if isinstance(exc, TimeoutError):
            return f"it did not answer within {timeout_s:g} s and was stopped"
        if self._sandbox is not None and self._sandbox.hit_memory_limit():
            return f"it used more than its memory limit of {self._limits.memory_bytes / 2**30:g} GiB and was stopped"
        if self._process is not None and self._process.poll() is not None:
            return f"it exited (status {self._process.returncode})"
        return f"it sent a malformed answer ({exc})"

    def __call__(self, arrays: Mapping[str, Decoded]) -> dict[str, np.ndarray]:
        """The model's named outputs for ``arrays``; :class:`HandlerError` with
        the script's own message when it raises."""
        with self._lock:
            if self._process is None:
                self._start()
            described, payload = pack_arrays(arrays)
            header, data = self._exchange({"inputs": described}, payload, self._call_timeout_s)
        if not header.get("ok"):
            raise HandlerError(f"the handler failed on these inputs: {str(header.get('error'))[:4000]}")
        try:
            outputs = arrays_from(header.get("outputs"), data)
        except FrameError as exc:
            raise HandlerError(f"the handler's process sent a malformed answer: {exc}") from None
        if list(outputs) != self._outputs or not all(isinstance(v, np.ndarray) for v in outputs.values()):
            raise HandlerError(f"the handler's process answered outputs {list(outputs)}, not {self._outputs}")
        return outputs

    def close(self) -> None:
        """Stop the sandboxed process and remove its cgroup."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None:
                    stream.close()
            self._process = None
        if self._sandbox is not None:
            self._sandbox.cleanup()
            self._sandbox = None

    def __del__(self) -> None:
        if hasattr(self, "_sandbox"):  # __init__ got far enough to start something
            self.close()
