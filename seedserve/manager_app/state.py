"""What the manager's handlers share: settings, the store, the admin check."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from starlette.requests import Request

from seedserve.errors import Unauthenticated
from seedserve.registry import ModelStore
from seedserve.settings import Settings

__all__ = ["ManagerState", "require_admin"]


@dataclass(frozen=True)
class ManagerState:
    settings: Settings
    store: ModelStore
    admin_token: str


def require_admin(request: Request) -> ManagerState:
    """The app state, once the request carries the admin token."""
    state: ManagerState = request.app.state.seedserve
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("missing token; send 'Authorization: Bearer <admin token>' (see <data dir>/admin-token)")
    if not hmac.compare_digest(token.strip().encode(), state.admin_token.encode()):
        raise Unauthenticated("the token is not valid; use the admin token from <data dir>/admin-token")
    return state
