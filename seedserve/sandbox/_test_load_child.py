"""Test-load an artifact: ``python -m seedserve.sandbox._test_load_child``, run
inside the sandbox (:mod:`seedserve.sandbox`) by :mod:`seedserve.manager_app.artifact_check`.

Reads one frame on stdin (the manifest and the format in its header, the
artifact's bytes as its payload); prints one JSON line: the output shapes
and the profile, or the error. Whatever the model raises is reported from
in here, so a message can hold only what the sandbox could see.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading

#: Largest artifact this process reads; the manager refuses larger ones before starting it.
_MAX_ARTIFACT = 2**40


def _import_ahead() -> None:
    """What every test-load needs, imported before the frame is read: a
    spare child (see artifact_check.SpareSandbox) has these done when its
    artifact arrives. torch._dynamo is what the profiler's dispatch mode
    imports on its first op (about two seconds here)."""
    import torch._dynamo  # noqa: F401

    import seedserve.profiler.profile  # noqa: F401


def _import_ahead_idle() -> threading.Thread:
    """:func:`_import_ahead` in a thread of the lowest CPU priority (Linux
    sets a nice value per thread), so that a spare started while the system
    starts takes only the CPU nothing else wants; the main thread, which runs
    the test-load, keeps its priority. Raising one's own nice value needs no
    privilege. When they are done it prints ``SPARE_READY`` (the manager hands
    a spare an artifact only then: imports at idle priority on a busy node
    could take minutes)."""

    def imports() -> None:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        _import_ahead()
        from seedserve.sandbox._frames import SPARE_READY

        print(SPARE_READY, flush=True)

    thread = threading.Thread(target=imports, name="imports", daemon=True)
    thread.start()
    return thread


def main() -> int:
    try:
        importing = _import_ahead_idle() if "--spare" in sys.argv[1:] else None
        from seedserve.sandbox._frames import read_frame

        if importing is None:
            _import_ahead()

        header, artifact = read_frame(sys.stdin.buffer, _MAX_ARTIFACT)
        if importing is not None:
            importing.join()
            _import_ahead()  # done, or raises here what failed in the thread
        from seedserve.codecs import Manifest, sample_inputs
        from seedserve.runtime import load_model, run_model

        manifest = Manifest.model_validate(header["manifest"])
        with contextlib.redirect_stdout(sys.stderr):  # a handler script's prints must not hide the report
            model = load_model(artifact, str(header["format"]))
            outputs = run_model(model, manifest, sample_inputs(manifest))
            profile = _profile(model, manifest)
        print(json.dumps({"ok": True, "outputs": {k: list(v.shape) for k, v in outputs.items()}, "profile": profile}))
    except MemoryError:  # the sandbox's memory limit, met inside Python
        print(json.dumps({"ok": False, "error": "the model ran out of memory (MemoryError)", "input": "artifact"}))
    except Exception as exc:  # report any failure of the model to the registrant
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        print(json.dumps({"ok": False, "error": message[:4000], "input": getattr(exc, "input", None)}))
    return 0


def _profile(model: object, manifest: object) -> dict[str, object]:
    """The model's profile; a model that runs but cannot be profiled still registers, with the reason."""
    from seedserve.profiler.profile import profile_manifest_model

    try:
        return profile_manifest_model(model, manifest).model_dump(mode="json")  # type: ignore[arg-type]
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}


if __name__ == "__main__":
    raise SystemExit(main())
