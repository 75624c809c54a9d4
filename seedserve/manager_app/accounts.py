"""``/api/users``, ``/api/tokens``, ``/api/me``: sign up (under the sign-up
policy, see :mod:`seedserve.manager_app.policy`), API tokens for the SDK and
the CLI (create, list, revoke; stored hashed)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from seedserve import api
from seedserve.errors import Unauthenticated
from seedserve.manager_app._json import json_body
from seedserve.manager_app.auth import authenticate, caller
from seedserve.manager_app.policy import invite_needed
from seedserve.manager_app.state import ManagerState
from seedserve.registry.account_store import TokenDoc, UserDoc, check_password, check_username

__all__ = ["create_token", "create_user", "list_tokens", "me", "revoke_token", "sign_in", "sign_up", "token_view"]


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


def token_view(doc: TokenDoc) -> api.Token:
    return api.Token(id=doc["id"], label=doc["label"], created_at=doc["created_at"])


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


async def create_user(request: Request) -> api.User:
    """Sign up: ``{"username", "password", "invite"?}``; with the admin token,
    the admin creates the account under any sign-up policy."""
    state: ManagerState = request.app.state.seedserve
    by_admin = "authorization" in request.headers and (await authenticate(request)).admin
    body = await json_body(request, api.SignUp)
    doc = await sign_up(state, body.username, body.password, body.invite, by_admin=by_admin)
    return api.User(username=doc["_id"], created_at=doc["created_at"])


async def create_token(request: Request) -> api.TokenCreated:
    """A new API token, shown once. Signed in (token or session), or with
    ``{"username", "password"}`` in the body (what ``seedserve login`` sends)."""
    state: ManagerState = request.app.state.seedserve
    body = await json_body(request, api.TokenRequest)
    if body.model_fields_set & {"username", "password"}:
        user = await sign_in(state, request, body.username, body.password)
    else:
        user = (await caller(request))[1].user
    token, doc = await state.accounts.create_token(user, body.label)
    return api.TokenCreated(**token_view(doc).model_dump(), token=token,
                            message="store this token now: it is shown only once")


async def list_tokens(request: Request) -> api.TokenList:
    state, who = await caller(request)
    return api.TokenList(tokens=[token_view(doc) for doc in await state.accounts.tokens(who.user)])


async def revoke_token(request: Request) -> api.Revoked:
    state, who = await caller(request)
    doc = await state.accounts.revoke_token(who.user, request.path_params["token_id"])
    return api.Revoked(revoked=doc["id"])


async def me(request: Request) -> api.Me:
    state, who = await caller(request)
    models = await state.store.list(who.user)
    return api.Me(username=who.user, via="session" if who.session else "token", models=[doc["name"] for doc in models])
