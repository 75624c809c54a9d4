"""Test-load an artifact in a child process: ``python -m seedserve.manager_app._probe PATH FORMAT MAX_MEMORY``
with the manifest as JSON on stdin. Prints one JSON line: the output shapes,
or the error. The manager never loads uploaded artifacts in its own process.
"""

from __future__ import annotations

import contextlib
import json
import resource
import sys
from pathlib import Path


def main() -> int:
    path, fmt, max_memory = sys.argv[1], sys.argv[2], int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_AS, (max_memory, max_memory))
    try:
        from seedserve.codecs import Manifest, sample_inputs
        from seedserve.runtime import load_model, run_model

        manifest = Manifest.model_validate_json(sys.stdin.read())
        with contextlib.redirect_stdout(sys.stderr):  # a handler script's prints must not hide the report
            model = load_model(Path(path).read_bytes(), fmt)
            outputs = run_model(model, manifest, sample_inputs(manifest))
            profile = _profile(model, manifest)
        print(json.dumps({"ok": True, "outputs": {k: list(v.shape) for k, v in outputs.items()}, "profile": profile}))
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
