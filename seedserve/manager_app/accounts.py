"""``/api/users``, ``/api/tokens``, ``/api/me``: sign up (under the sign-up
policy, see :mod:`seedserve.manager_app.policy`), API tokens for the SDK and
the CLI (create, list, revoke; stored hashed)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from seedserve.errors import InvalidInput, Unauthenticated
from seedserve.manager_app._json import json_object
from seedserve.manager_app.auth import authenticate, caller
from seedserve.manager_app.policy import invite_needed
from seedserve.manager_app.state import ManagerState
from seedserve.registry.accounts import TokenDoc, UserDoc, check_password, check_username

__all__ = ["routes", "sign_in", "sign_up", "token_view"]

MAX_LABEL = 64


async def sign_in(state: ManagerState, request: Request, username: Any, password: Any) -> str:
    """The username once ``password`` is right; failures are rate-limited per
    client address and per username (429), and say nothing about which was wrong."""
    client = request.client.host if request.client else "?"
    name = username if isinstance(username, str) else ""
    state.sign_in_failures.check(ip=client, user=name)
    if not isinstance(password, str) or not name or not await state.accounts.verify_password(name, password):
        state.sign_in_failures.failed(ip=client, user=name)
        raise Unauthenticated("wrong username or password")
    return name


def label_field(body: dict[str, Any], default: str) -> str:
    label = body.get("label", default)
    if not isinstance(label, str) or not 1 <= len(label) <= MAX_LABEL:
        raise InvalidInput(f"'label' is a string of 1 to {MAX_LABEL} characters", input="label")
    return label


def token_view(doc: TokenDoc) -> dict[str, Any]:
    return {"id": doc["id"], "label": doc["label"], "created_at": doc["created_at"].isoformat()}


async def sign_up(state: ManagerState, username: Any, password: Any, invite: Any, *, by_admin: bool) -> UserDoc:
    """Create an account as the sign-up policy allows. An invite code is
    consumed before the account exists (so of two sign-ups with one code one
    wins) and given back if the account cannot be created after all."""
    username, password = check_username(username), check_password(password)
    code = invite_needed(state.settings.signup, invite, by_admin=by_admin)
    if code is None:
        return await state.accounts.create_user(username, password)
    await state.invites.consume(code, username)
    try:
        return await state.accounts.create_user(username, password)
    except BaseException:
        await state.invites.give_back(code, username)
        raise


async def create_user(request: Request) -> Response:
    """Sign up: ``{"username", "password", "invite"?}``; with the admin token,
    the admin creates the account under any sign-up policy."""
    state: ManagerState = request.app.state.seedserve
    by_admin = "authorization" in request.headers and (await authenticate(request)).admin
    body = await json_object(request)
    doc = await sign_up(state, body.get("username"), body.get("password"), body.get("invite"), by_admin=by_admin)
    return JSONResponse({"username": doc["_id"], "created_at": doc["created_at"].isoformat()}, status_code=201)


async def create_token(request: Request) -> Response:
    """A new API token, shown once. Signed in (token or session), or with
    ``{"username", "password"}`` in the body (what ``seedserve login`` sends)."""
    state: ManagerState = request.app.state.seedserve
    body = await json_object(request)
    label = label_field(body, "api")
    if "password" in body or "username" in body:
        user = await sign_in(state, request, body.get("username"), body.get("password"))
    else:
        user = (await caller(request))[1].user
    token, doc = await state.accounts.create_token(user, label)
    return JSONResponse({**token_view(doc), "token": token, "message": "store this token now: it is shown only once"},
                        status_code=201)


async def list_tokens(request: Request) -> Response:
    state, who = await caller(request)
    return JSONResponse({"tokens": [token_view(doc) for doc in await state.accounts.tokens(who.user)]})


async def revoke_token(request: Request) -> Response:
    state, who = await caller(request)
    doc = await state.accounts.revoke_token(who.user, request.path_params["token_id"])
    return JSONResponse({"revoked": doc["id"]})


async def me(request: Request) -> Response:
    state, who = await caller(request)
    models = await state.store.list(who.user)
    return JSONResponse({"username": who.user, "via": "session" if who.session else "token",
                         "models": [doc["name"] for doc in models]})


routes = [
    Route("/api/users", create_user, methods=["POST"]),
    Route("/api/me", me, methods=["GET"]),
    Route("/api/tokens", create_token, methods=["POST"]),
    Route("/api/tokens", list_tokens, methods=["GET"]),
    Route("/api/tokens/{token_id}", revoke_token, methods=["DELETE"]),
]
