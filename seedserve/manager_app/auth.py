"""Who is calling: an API token (``Authorization: Bearer``), or a dashboard
session cookie with a CSRF token on every request that changes something.

Tokens and sessions resolve to a username; every handler scopes what it reads
and writes to that user, and answers 404 for anything else.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from seedserve.errors import Forbidden, Unauthenticated
from seedserve.ratelimit import FailureLimiter
from seedserve.registry.account_store import TOKEN_PREFIX, Session
from seedserve.registry.store import ADMIN

if TYPE_CHECKING:
    from seedserve.manager_app.state import ManagerState

__all__ = ["Caller", "sign_in_limiter", "SESSION_COOKIE", "CSRF_HEADER", "admin_caller", "authenticate", "caller",
           "check_csrf", "current_session", "require_admin", "set_session_cookie"]

SESSION_COOKIE = "seedserve_session"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Caller:
    """An authenticated user, and their dashboard session if that is how they came."""

    user: str
    session: Session | None = None
    #: Authenticated with the admin token (not merely named ``admin``).
    admin: bool = False


async def current_session(request: Request) -> tuple[str, Session] | None:
    """The request's live session (id, document), signed in or not."""
    state: ManagerState = request.app.state.seedserve
    sid = request.cookies.get(SESSION_COOKIE)
    if not sid:
        return None
    session = await state.accounts.session(sid)
    return None if session is None else (sid, session)


def check_csrf(session: Session, token: str | None) -> None:
    """Refuse a state-changing request whose CSRF token is not its session's."""
    if not token or not hmac.compare_digest(token.encode(), session["csrf"].encode()):
        raise Forbidden("missing or wrong CSRF token; reload the page and try again", input="csrf_token")


async def authenticate(request: Request) -> Caller:
    """The caller of an ``/api`` request, or :class:`Unauthenticated`."""
    state: ManagerState = request.app.state.seedserve
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        if hmac.compare_digest(token.encode(), state.admin_token.encode()):
            return Caller(ADMIN, admin=True)
        user = await state.accounts.token_user(token) if token.startswith(TOKEN_PREFIX) else None
        if user is None:
            raise Unauthenticated("the token is not valid (revoked?); create one with `seedserve login`")
        return Caller(user)
    found = await current_session(request)
    if found is not None and (user := found[1]["user"]) is not None:
        session = found[1]
        if request.method not in _SAFE_METHODS:
            check_csrf(session, request.headers.get(CSRF_HEADER))
        return Caller(user, session)
    raise Unauthenticated(
        "sign in: send 'Authorization: Bearer <API token>' (create one with `seedserve login`), or use the dashboard"
    )


async def caller(request: Request) -> tuple[ManagerState, Caller]:
    """The app state and the authenticated caller."""
    return request.app.state.seedserve, await authenticate(request)


async def admin_caller(request: Request) -> tuple[ManagerState, Caller]:
    """The app state and the caller, who must hold the admin token (else 403)."""
    state, who = await caller(request)
    require_admin(who)
    return state, who


def require_admin(who: Caller) -> None:
    if not who.admin:
        raise Forbidden("only the admin may do this: authenticate with the admin token "
                        "(<data dir>/admin-token, or SEEDSERVE_ADMIN_TOKEN)")


def set_session_cookie(response: Response, request: Request, sid: str, max_age_s: int) -> None:
    response.set_cookie(SESSION_COOKIE, sid, max_age=max_age_s, path="/", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")


def sign_in_limiter() -> FailureLimiter:
    """Failed sign-ins: 100 a minute from one client address, 10 for one username."""
    return FailureLimiter({"ip": 100, "user": 10}, what="failed sign-ins")
