"""A handler package's process: ``python -m seedserve.sandbox.worker``, run
inside the sandbox by :class:`seedserve.sandbox.handler.SandboxedHandler`.

Frames on stdin, frames on stdout (:mod:`seedserve.sandbox._frames`):
first the manifest (header) and the package (payload), answered by
``{"ok": true}`` once ``load()`` has run; then one frame per call with
the decoded inputs, answered by the named outputs or the error. Errors
are made here, from what the script raised, so they hold only what the
sandbox could see.
"""

from __future__ import annotations

import os
import sys
from typing import Any, BinaryIO

#: Largest package or batch of inputs this process reads.
_MAX_PAYLOAD = 2**40


def _error(exc: BaseException) -> dict[str, Any]:
    message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
    return {"ok": False, "error": str(message)[:4000], "input": getattr(exc, "input", None)}


def _serve(frames_in: BinaryIO, frames_out: BinaryIO) -> int:
    from seedserve.codecs import Manifest
    from seedserve.runtime import Handler, run_model
    from seedserve.sandbox._frames import FrameError, arrays_from, pack_arrays, read_frame, write_frame

    header, package = read_frame(frames_in, _MAX_PAYLOAD)
    try:
        manifest = Manifest.model_validate(header["manifest"])
        handler = Handler.from_package(package)
    except Exception as exc:  # the script's failure to load goes back to its owner
        write_frame(frames_out, _error(exc))
        return 0
    write_frame(frames_out, {"ok": True})
    while True:
        try:
            header, payload = read_frame(frames_in, _MAX_PAYLOAD)
        except FrameError:  # the server closed the pipe: nothing more to serve
            return 0
        try:
            outputs = run_model(handler, manifest, arrays_from(header.get("inputs"), payload))
            described, data = pack_arrays(outputs)
            write_frame(frames_out, {"ok": True, "outputs": described}, data)
        except MemoryError:  # the sandbox's memory limit, met inside Python
            write_frame(frames_out, {"ok": False, "error": "the handler ran out of memory (MemoryError)"})
        except Exception as exc:
            write_frame(frames_out, _error(exc))


def main() -> int:
    # The frames keep their own descriptors; what the script prints goes to stderr.
    frames_in = os.fdopen(os.dup(0), "rb")
    frames_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    sys.stdout = sys.stderr
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    return _serve(frames_in, frames_out)


if __name__ == "__main__":
    raise SystemExit(main())
