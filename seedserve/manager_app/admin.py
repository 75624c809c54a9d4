"""What only the admin (the admin token) does: ``/api/invites`` (invite codes
for ``SEEDSERVE_SIGNUP=invite``: create, shown once and stored hashed; list;
revoke) and ``PUT /api/users/{username}/trusted`` (the accounts that may
register handler packages under ``SEEDSERVE_HANDLERS=trusted``)."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request

from seedserve import api
from seedserve.manager_app._json import json_body
from seedserve.manager_app.auth import admin_caller
from seedserve.registry.invites import InviteDoc

__all__ = ["create_invite", "invite_view", "list_invites", "revoke_invite", "set_trusted"]


def invite_view(doc: InviteDoc) -> api.Invite:
    return api.Invite(id=doc["id"], label=doc["label"], created_at=doc["created_at"], expires_at=doc["expires_at"],
                      single_use=doc["single_use"], uses=doc["uses"], used_by=doc["used_by"])


async def create_invite(request: Request) -> api.InviteCreated:
    """``{"label"?, "expires_in_s"?, "single_use"?}``: a new code, shown once."""
    state, _ = await admin_caller(request)
    body = await json_body(request, api.InviteRequest)
    expires_in = None if body.expires_in_s is None else timedelta(seconds=body.expires_in_s)
    code, doc = await state.invites.create(body.label, expires_in, body.single_use)
    return api.InviteCreated(**invite_view(doc).model_dump(), code=code,
                             message="give this code to the person signing up; it is shown only once")


async def list_invites(request: Request) -> api.InviteList:
    state, _ = await admin_caller(request)
    return api.InviteList(invites=[invite_view(doc) for doc in await state.invites.list()])


async def revoke_invite(request: Request) -> api.Revoked:
    state, _ = await admin_caller(request)
    doc = await state.invites.revoke(request.path_params["invite_id"])
    return api.Revoked(revoked=doc["id"])


async def set_trusted(request: Request) -> api.Trust:
    """``{"trusted": true|false}``: whether the account may register handler packages."""
    state, _ = await admin_caller(request)
    username = request.path_params["username"]
    body = await json_body(request, api.TrustRequest)
    await state.accounts.set_trusted(username, body.trusted)
    return api.Trust(username=username, trusted=body.trusted)
