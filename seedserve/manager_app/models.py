"""``/api/models``: register, list, show and delete models."""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from seedserve.codecs import Manifest, parse_manifest
from seedserve.errors import AlreadyExists, InvalidArtifact, InvalidInput, InvalidManifest, NotFound
from seedserve.manager_app.probe import probe_artifact
from seedserve.manager_app.state import ManagerState, require_admin
from seedserve.registry import KeyDoc, ModelDoc, hash_key, new_key, new_model_doc
from seedserve.runtime import ARTIFACT_FORMATS

__all__ = ["routes"]

_CHUNK = 1 << 20


async def register(request: Request) -> Response:
    state = require_admin(request)
    async with request.form(max_files=1, max_fields=8, max_part_size=1 << 20) as form:
        manifest = _manifest_field(form.get("manifest"))
        fmt = _format_field(form.get("format"))
        upload = form.get("artifact")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("missing file part 'artifact' (the model file)", input="artifact")
        await _ensure_name_free(state, manifest.name)
        with tempfile.TemporaryDirectory(prefix="seedserve-upload-") as tmp:
            path = Path(tmp) / "artifact"
            await _save(upload, path, state.settings.max_artifact_bytes)
            outputs = await probe_artifact(path, fmt, manifest)
            artifact = await state.store.put_artifact(
                _chunks(path), filename=f"{manifest.name}-v1", fmt=fmt, max_bytes=state.settings.max_artifact_bytes
            )
    key = new_key()
    key_doc = KeyDoc(id="k1", label="default", sha256=hash_key(key), created_at=datetime.now(UTC))
    doc = new_model_doc(manifest.name, manifest.model_dump(mode="json"), artifact, key_doc)
    try:
        await state.store.insert(doc)
    except BaseException:
        # No half registrations: the artifact goes when its document cannot be stored.
        await state.store.delete_artifact(artifact["file_id"])
        raise
    body = {
        "name": manifest.name,
        "version": doc["version"],
        "key": key,
        "key_id": key_doc["id"],
        "outputs": outputs,
        "message": "store this key now: it is shown only once",
    }
    return JSONResponse(body, status_code=201)


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


async def _ensure_name_free(state: ManagerState, name: str) -> None:
    try:
        await state.store.get(name)
    except NotFound:
        return
    # The same error the insert would raise, before the costly probe.
    raise AlreadyExists(
        f"a model named {name!r} is already registered; choose another name or delete it first", input="name"
    )


async def _save(upload: UploadFile, path: Path, max_bytes: int) -> None:
    size = 0
    async with await anyio.open_file(path, "wb") as out:
        while chunk := await upload.read(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise InvalidArtifact(f"the artifact exceeds the limit of {max_bytes:,} bytes", input="artifact")
            await out.write(chunk)
    if size == 0:
        raise InvalidArtifact("the artifact file is empty", input="artifact")


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as source:
        while chunk := await source.read(_CHUNK):
            yield chunk


def _public(doc: ModelDoc) -> dict[str, Any]:
    """A model document as the API shows it: no key hashes, no storage ids."""
    return {
        "name": doc["name"],
        "version": doc["version"],
        "manifest": doc["manifest"],
        "artifact": {k: doc["artifact"][k] for k in ("format", "size", "sha256")},
        "keys": [{"id": k["id"], "label": k["label"], "created_at": k["created_at"].isoformat()} for k in doc["keys"]],
        "created_at": doc["created_at"].isoformat(),
        "endpoints": {"predict": f"/models/{doc['name']}/predict"},
    }


async def list_models(request: Request) -> Response:
    state = require_admin(request)
    return JSONResponse({"models": [_public(doc) for doc in await state.store.list()]})


async def get_model(request: Request) -> Response:
    state = require_admin(request)
    return JSONResponse(_public(await state.store.get(request.path_params["name"])))


async def delete_model(request: Request) -> Response:
    state = require_admin(request)
    doc = await state.store.delete(request.path_params["name"])
    return JSONResponse({"deleted": doc["name"], "version": doc["version"]})


routes = [
    Route("/api/models", register, methods=["POST"]),
    Route("/api/models", list_models, methods=["GET"]),
    Route("/api/models/{name}", get_model, methods=["GET"]),
    Route("/api/models/{name}", delete_model, methods=["DELETE"]),
]
