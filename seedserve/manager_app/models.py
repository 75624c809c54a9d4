"""``/api/models``: register models and versions, list, show, pin a version, delete."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from starlette.requests import Request

from seedserve import api
from seedserve.codecs import Manifest
from seedserve.manager_app._json import json_body
from seedserve.manager_app._upload import CHUNK, probed_upload
from seedserve.manager_app.auth import caller
from seedserve.manager_app.keys import key_answer
from seedserve.manager_app.profiles import insight
from seedserve.registry import KeyDoc, ModelDoc, VersionDoc, default_version, hash_key, new_key

__all__ = ["delete_model", "get_model", "get_version", "list_models", "list_versions", "pin_version",
           "register"]

logger = logging.getLogger("seedserve.manager.models")

#: Said to whoever registers TorchScript: served as before, but torch 2.13 deprecates it.
TORCHSCRIPT_DEPRECATED = (
    "TorchScript is deprecated (torch 2.13 warns on torch.jit.script and torch.jit.save) and seedserve will "
    "keep serving it, but register a torch.export program instead: "
    "seedserve.client.export.save_program(model, manifest, 'model.pt2')"
)


async def register(request: Request) -> api.Registered:
    """A new model (version 1, with a key), or the next version of an existing one."""
    state, who = await caller(request)
    async with probed_upload(request, state, who, check_name=True) as probed:
        manifest, outputs, profile = probed.manifest, probed.outputs, probed.profile
        stored = time.monotonic()
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
    seconds = {**probed.seconds, "store": time.monotonic() - stored}
    extra: dict[str, Any] = {"warnings": [TORCHSCRIPT_DEPRECATED]} if probed.format == "torchscript" else {}
    if created:
        extra |= {"key": key, "key_id": key_doc["id"], "message": "store this key now: it is shown only once"}
    else:
        extra |= {"key": None, "message": f"version {version} registered; the model's keys stay valid"}
    began = time.monotonic()
    shown = await insight(state.store, manifest, profile)
    seconds["insight"] = time.monotonic() - began
    logger.info("registered model %s version %d: %s", manifest.name, version,
                ", ".join(f"{step} {s:.2f} s" for step, s in seconds.items()))
    return api.Registered(name=manifest.name, version=version, outputs=outputs, **shown, **extra)


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as source:
        while chunk := await source.read(CHUNK):
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
