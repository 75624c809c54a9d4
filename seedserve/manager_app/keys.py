"""``/api/models/{name}/keys``: a model's secret keys. Several per model, each
labelled; shown once, stored as a hash; rotate (a new secret under the same
label, the old one revoked) and revoke. The master drops a revoked key within
its key-cache lifetime (5 s)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from seedserve import api
from seedserve.errors import Conflict, NotFound
from seedserve.manager_app._json import json_body
from seedserve.manager_app.auth import caller
from seedserve.registry import KeyDoc, hash_key, new_key

__all__ = ["create_key", "key_answer", "key_view", "list_keys", "revoke_key", "rotate_key"]

#: Keys per model, so that a script cannot grow a model's document without bound.
MAX_KEYS = 32

_SHOWN_ONCE = "store this key now: it is shown only once"


def key_answer(key: KeyDoc) -> api.Key:
    """A key as the API shows it: never its hash."""
    return api.Key(id=key["id"], label=key["label"], created_at=key["created_at"])


def key_view(key: KeyDoc) -> dict[str, Any]:
    """:func:`key_answer` as JSON, for the dashboard's templates."""
    return key_answer(key).model_dump(mode="json")


def _created(key: KeyDoc, secret: str, message: str, replaces: str | None = None) -> api.KeyCreated:
    # ``replaces`` is left unset, not null, on a new key: unset fields stay out of the answer.
    extra: dict[str, Any] = {} if replaces is None else {"replaces": replaces}
    return api.KeyCreated(**key_answer(key).model_dump(), key=secret, message=message, **extra)


def _fresh(label: str) -> tuple[str, KeyDoc]:
    secret = new_key()
    return secret, KeyDoc(id="k_" + secrets.token_hex(6), label=label, sha256=hash_key(secret),
                          created_at=datetime.now(UTC))


def _missing(name: str, key_id: str) -> NotFound:
    return NotFound(f"model {name!r} has no key {key_id!r}; list them with GET /api/models/{name}/keys",
                    input="key_id")


async def list_keys(request: Request) -> api.KeyList:
    state, who = await caller(request)
    doc = await state.store.get(request.path_params["name"], who.user)
    return api.KeyList(keys=[key_answer(key) for key in doc["keys"]])


async def create_key(request: Request) -> api.KeyCreated:
    """``{"label": "..."}`` → a new key, shown once."""
    state, who = await caller(request)
    name = request.path_params["name"]
    await state.store.get(name, who.user)  # 404 before the body is looked at
    body = await json_body(request, api.KeyRequest)
    secret, key = _fresh(body.label)

    def add(keys: list[KeyDoc]) -> list[KeyDoc]:
        if len(keys) >= MAX_KEYS:
            raise Conflict(f"model {name!r} has {MAX_KEYS} keys already; revoke one first", input="label")
        return [*keys, key]

    await state.store.update_keys(name, who.user, add)
    return _created(key, secret, _SHOWN_ONCE)


async def rotate_key(request: Request) -> api.KeyCreated:
    """A new secret under the key's label; the old key stops working."""
    state, who = await caller(request)
    name, key_id = request.path_params["name"], request.path_params["key_id"]
    secret: str = ""
    created: KeyDoc | None = None

    def rotate(keys: list[KeyDoc]) -> list[KeyDoc]:
        nonlocal secret, created
        old = next((k for k in keys if k["id"] == key_id), None)
        if old is None:
            raise _missing(name, key_id)
        secret, created = _fresh(old["label"])
        return [created if k["id"] == key_id else k for k in keys]

    await state.store.update_keys(name, who.user, rotate)
    assert created is not None
    return _created(created, secret, f"{_SHOWN_ONCE}; the old key is revoked", replaces=key_id)


async def revoke_key(request: Request) -> api.Revoked:
    state, who = await caller(request)
    name, key_id = request.path_params["name"], request.path_params["key_id"]

    def revoke(keys: list[KeyDoc]) -> list[KeyDoc]:
        if not any(k["id"] == key_id for k in keys):
            raise _missing(name, key_id)
        return [k for k in keys if k["id"] != key_id]

    await state.store.update_keys(name, who.user, revoke)
    return api.Revoked(revoked=key_id)
