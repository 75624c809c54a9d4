"""The registration form, shared by ``POST /api/models`` (which stores what it
holds) and ``POST /api/profile`` (which does not): the manifest and format
fields checked, the artifact saved under its size limit, test-loaded and
profiled in the sandbox, before anything is stored."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from starlette.datastructures import UploadFile
from starlette.requests import Request

from seedserve.codecs import Manifest, parse_manifest
from seedserve.errors import InvalidArtifact, InvalidInput, InvalidManifest
from seedserve.manager_app._form import watched_form
from seedserve.manager_app.auth import Caller
from seedserve.manager_app.orphans import UPLOAD_PREFIX, upload_dir
from seedserve.manager_app.policy import handler_refusal, handlers_allowed
from seedserve.manager_app.state import ManagerState
from seedserve.runtime import ARTIFACT_FORMATS

__all__ = ["CHUNK", "Probed", "probed_upload"]

#: Bytes per read and write of an artifact.
CHUNK = 1 << 20


@dataclass(frozen=True)
class Probed:
    manifest: Manifest
    format: str
    path: Path
    outputs: dict[str, list[int]]
    profile: dict[str, Any]
    #: Seconds of each step so far ("upload": the form read and saved, "test-load": the sandboxed child)
    seconds: dict[str, float]


@asynccontextmanager
async def probed_upload(request: Request, state: ManagerState, who: Caller, *,
                        check_name: bool = False) -> AsyncIterator[Probed]:
    """The registration form (``manifest``, ``format``, ``artifact``): the
    artifact saved under its size limit to a temporary file, test-loaded and
    profiled in a child process. The file lives until the block ends.

    Refused before that work: a handler package the caller may not register
    (SEEDSERVE_HANDLERS), as soon as its ``format`` field has arrived, so
    before the artifact is read when the field comes first, as the SDK sends
    it; and with ``check_name``, a name another account holds."""
    began = time.monotonic()
    refuse_handler = await _handler_check(state, who)

    def watch(name: str, value: str) -> None:
        if name == "format":
            refuse_handler(value)

    async with watched_form(request, watch, max_files=1, max_fields=8, max_part_size=1 << 20) as form:
        manifest = _manifest_field(form.get("manifest"))
        if check_name:
            await state.store.check_name_free(manifest.name, who.user)
        fmt = _format_field(form.get("format"))
        refuse_handler(fmt)
        upload = form.get("artifact")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("missing file part 'artifact' (the model file)", input="artifact")
        # Named after this process, so a restarted manager knows it can go.
        with tempfile.TemporaryDirectory(prefix=f"{UPLOAD_PREFIX}{os.getpid()}-",
                                         dir=upload_dir(state.settings.data_dir)) as tmp:
            path = Path(tmp) / "artifact"
            await _save(upload, path, state.settings.max_artifact_bytes)
            saved = time.monotonic()
            outputs, profile = await state.test_loads.check(path, fmt, manifest)
            seconds = {"upload": saved - began, "test-load": time.monotonic() - saved}
            yield Probed(manifest, fmt, path, outputs, profile, seconds)


async def _handler_check(state: ManagerState, who: Caller) -> Callable[[str], None]:
    """A check that raises for the format ``handler`` when ``who`` may not
    register handler packages (one read of the account, only when it matters)."""
    policy = state.settings.handlers
    trusted = policy == "trusted" and not who.admin and await state.accounts.is_trusted(who.user)
    allowed = handlers_allowed(policy, admin=who.admin, trusted=trusted)

    def check(fmt: str) -> None:
        if fmt == "handler" and not allowed:
            raise handler_refusal(policy)

    return check


def _manifest_field(value: Any) -> Manifest:
    if not isinstance(value, str):
        raise InvalidManifest("missing form field 'manifest' (the manifest as a JSON string)", input="manifest")
    try:
        data = json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise InvalidManifest(f"form field 'manifest' is not valid JSON: {exc}", input="manifest") from None
    return parse_manifest(data)


def _format_field(value: Any) -> str:
    fmt = value if isinstance(value, str) else "torchscript"
    if fmt not in ARTIFACT_FORMATS:
        raise InvalidArtifact(f"format {fmt!r} is not supported; use one of {list(ARTIFACT_FORMATS)}", input="format")
    return fmt


async def _save(upload: UploadFile, path: Path, max_bytes: int) -> None:
    size = 0
    async with await anyio.open_file(path, "wb") as out:
        while chunk := await upload.read(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise InvalidArtifact(f"the artifact exceeds the limit of {max_bytes:,} bytes", input="artifact")
            await out.write(chunk)
    if size == 0:
        raise InvalidArtifact("the artifact file is empty", input="artifact")
