"""What only the admin (the admin token) does: ``/api/invites`` (invite codes
for ``SEEDSERVE_SIGNUP=invite``: create, shown once and stored hashed; list;
revoke) and ``PUT /api/users/{username}/trusted`` (the accounts that may
register handler packages under ``SEEDSERVE_HANDLERS=trusted``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from seedserve.errors import InvalidInput
from seedserve.manager_app._json import json_object
from seedserve.manager_app.accounts import label_field
from seedserve.manager_app.auth import admin_caller
from seedserve.registry.invites import InviteDoc

__all__ = ["MAX_EXPIRY_S", "invite_view", "routes"]

#: The longest an invite may stay valid: a year.
MAX_EXPIRY_S = 365 * 24 * 3600


def invite_view(doc: InviteDoc) -> dict[str, Any]:
    expires = doc["expires_at"]
    return {"id": doc["id"], "label": doc["label"], "created_at": doc["created_at"].isoformat(),
            "expires_at": None if expires is None else expires.isoformat(), "single_use": doc["single_use"],
            "uses": doc["uses"], "used_by": doc["used_by"]}


def _expiry(body: dict[str, Any]) -> timedelta | None:
    value = body.get("expires_in_s")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_EXPIRY_S:
        raise InvalidInput(f"'expires_in_s' is a whole number of seconds from 1 to {MAX_EXPIRY_S:,} (a year), "
                           "or null for no expiry", input="expires_in_s")
    return timedelta(seconds=value)


def _flag(body: dict[str, Any], name: str, default: bool | None) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"'{name}' is true or false", input=name)
    return value


async def create_invite(request: Request) -> Response:
    """``{"label"?, "expires_in_s"?, "single_use"?}``: a new code, shown once."""
    state, _ = await admin_caller(request)
    body = await json_object(request)
    label, expires_in, single_use = label_field(body, "invite"), _expiry(body), _flag(body, "single_use", True)
    code, doc = await state.invites.create(label, expires_in, single_use)
    return JSONResponse({**invite_view(doc), "code": code,
                         "message": "give this code to the person signing up; it is shown only once"},
                        status_code=201)


async def list_invites(request: Request) -> Response:
    state, _ = await admin_caller(request)
    return JSONResponse({"invites": [invite_view(doc) for doc in await state.invites.list()]})


async def revoke_invite(request: Request) -> Response:
    state, _ = await admin_caller(request)
    doc = await state.invites.revoke(request.path_params["invite_id"])
    return JSONResponse({"revoked": doc["id"]})


async def set_trusted(request: Request) -> Response:
    """``{"trusted": true|false}``: whether the account may register handler packages."""
    state, _ = await admin_caller(request)
    username = request.path_params["username"]
    body = await json_object(request)
    if "trusted" not in body:
        raise InvalidInput('send {"trusted": true} to trust the account, {"trusted": false} to stop',
                           input="trusted")
    trusted = _flag(body, "trusted", None)
    await state.accounts.set_trusted(username, trusted)
    return JSONResponse({"username": username, "trusted": trusted})


routes = [
    Route("/api/invites", create_invite, methods=["POST"]),
    Route("/api/invites", list_invites, methods=["GET"]),
    Route("/api/invites/{invite_id}", revoke_invite, methods=["DELETE"]),
    Route("/api/users/{username}/trusted", set_trusted, methods=["PUT"]),
]
