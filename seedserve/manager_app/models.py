"""``/api/models``: register models and versions, list, show, pin a version, delete."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from starlette.datastructures import UploadFile
from starlette.requests import Request

from seedserve import api
from seedserve.codecs import Manifest, parse_manifest
from seedserve.errors import InvalidArtifact, InvalidInput, InvalidManifest
from seedserve.manager_app._form import watched_form
from seedserve.manager_app._json import json_body
from seedserve.manager_app.auth import Caller, caller
from seedserve.manager_app.keys import key_answer
from seedserve.manager_app.orphans import UPLOAD_PREFIX, upload_dir
from seedserve.manager_app.policy import handler_refusal, handlers_allowed
from seedserve.manager_app.probe import probe_artifact
from seedserve.manager_app.profiles import insight
from seedserve.manager_app.state import ManagerState
from seedserve.registry import KeyDoc, ModelDoc, VersionDoc, default_version, hash_key, new_key
from seedserve.runtime import ARTIFACT_FORMATS

__all__ = ["delete_model", "get_model", "get_version", "list_models", "list_versions", "pin_version",
           "probed_upload", "register"]

_CHUNK = 1 << 20


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
            outputs, profile = await probe_artifact(path, fmt, manifest, limits=state.settings.sandbox_limits)
            yield Probed(manifest, fmt, path, outputs, profile)


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


#: Said to whoever registers TorchScript: served as before, but torch 2.13 deprecates it.
TORCHSCRIPT_DEPRECATED = (
    "TorchScript is deprecated (torch 2.13 warns on torch.jit.script and torch.jit.save) and seedserve will "
    "keep serving it, but register a torch.export program instead: "
    "seedserve.client.export.save_program(model, manifest, 'model.pt2')"
)


@dataclass(frozen=True)
class Probed:
    manifest: Manifest
    format: str
    path: Path
    outputs: dict[str, list[int]]
    profile: dict[str, Any]


async def register(request: Request) -> api.Registered:
    """A new model (version 1, with a key), or the next version of an existing one."""
    state, who = await caller(request)
    async with probed_upload(request, state, who, check_name=True) as probed:
        manifest, outputs, profile = probed.manifest, probed.outputs, probed.profile
        artifact = await state.store.put_artifact(
            _chunks(probed.path), filename=manifest.name, fmt=probed.format,
            max_bytes=state.settings.max_artifact_bytes,
        )
    key = new_key()
    key_doc = KeyDoc(id="k1", label="default", sha256=hash_key(key), created_at=datetime.now(UTC))
    try:
        version, created = await state.store.add_version(
            manifest.name, manifest.model_dump(mode="json"), artifact, key_doc, profile, owner=who.user
        )
    except BaseException:
        # No half registrations: the artifact goes when its version cannot be stored.
        await state.store.delete_artifact(artifact["file_id"])
        raise
    extra: dict[str, Any] = {"warnings": [TORCHSCRIPT_DEPRECATED]} if probed.format == "torchscript" else {}
    if created:
        extra |= {"key": key, "key_id": key_doc["id"], "message": "store this key now: it is shown only once"}
    else:
        extra |= {"key": None, "message": f"version {version} registered; the model's keys stay valid"}
    return api.Registered(name=manifest.name, version=version, outputs=outputs,
                          **await insight(state.store, manifest, profile), **extra)


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


def _public(doc: ModelDoc, versions: list[VersionDoc]) -> api.Model:
    """A model as the API shows it: no key hashes, no storage ids."""
    name, serving = doc["name"], default_version(doc)
    current = next((v for v in versions if v["version"] == serving), None)
    return api.Model(
        name=name,
        version=serving,
        latest=doc["latest"],
        pinned=doc["pinned"],
        manifest=current["manifest"] if current else None,
        artifact=_artifact(current) if current else None,
        versions=[v["version"] for v in versions],
        keys=[key_answer(k) for k in doc["keys"]],
        created_at=doc["created_at"],
        endpoints={"predict": f"/models/{name}/predict",
                   "version_predict": f"/models/{name}/versions/{{version}}/predict"},
    )


def _artifact(version: VersionDoc) -> api.Artifact:
    return api.Artifact.model_validate({k: version["artifact"][k] for k in ("format", "size", "sha256")})


def _public_version(doc: ModelDoc, version: VersionDoc) -> api.Version:
    return api.Version(
        name=version["name"],
        version=version["version"],
        serving=version["version"] == default_version(doc),
        manifest=version["manifest"],
        artifact=_artifact(version),
        created_at=version["created_at"],
        endpoints={"predict": f"/models/{version['name']}/versions/{version['version']}/predict"},
    )


async def list_models(request: Request) -> api.ModelList:
    state, who = await caller(request)
    docs = await state.store.list(who.user)
    return api.ModelList(models=[_public(doc, await state.store.versions(doc["name"])) for doc in docs])


#: What a model whose serving version is missing shows instead of its insight.
_NO_INSIGHT: dict[str, Any] = {"profile": None, "predictions": [], "recommendation": None, "measured": {}}


async def get_model(request: Request) -> api.ModelDetail:
    """The model, with its serving version's profile, predictions and recommendation."""
    state, who = await caller(request)
    name = request.path_params["name"]
    doc = await state.store.get(name, who.user)
    versions = await state.store.versions(name)
    shown = _public(doc, versions)
    current = next((v for v in versions if v["version"] == shown.version), None)
    seen = _NO_INSIGHT if current is None else await insight(
        state.store, Manifest.model_validate(current["manifest"]), current.get("profile"), current.get("measured"))
    return api.ModelDetail(**shown.model_dump(), **seen)


async def list_versions(request: Request) -> api.VersionList:
    state, who = await caller(request)
    name = request.path_params["name"]
    doc = await state.store.get(name, who.user)
    return api.VersionList(versions=[_public_version(doc, v) for v in await state.store.versions(name)])


async def get_version(request: Request) -> api.Version:
    state, who = await caller(request)
    name = request.path_params["name"]
    doc = await state.store.get(name, who.user)
    return _public_version(doc, await state.store.get_version(name, request.path_params["version"]))


async def pin_version(request: Request) -> api.Pinned:
    """``PUT /api/models/{name}/pin`` with ``{"version": N}``: serve version N
    at the model's endpoint (a rollback); ``{"version": null}`` follows the latest."""
    state, who = await caller(request)
    name = request.path_params["name"]
    await state.store.get(name, who.user)  # 404 before the body is looked at
    body = await json_body(request, api.PinRequest, input="version")
    doc = await state.store.pin(name, body.version, who.user)
    return api.Pinned(name=doc["name"], version=default_version(doc), pinned=doc["pinned"], latest=doc["latest"])


async def delete_model(request: Request) -> api.Deleted:
    state, who = await caller(request)
    doc = await state.store.delete(request.path_params["name"], who.user)
    return api.Deleted(deleted=doc["name"], versions=doc["latest"])
