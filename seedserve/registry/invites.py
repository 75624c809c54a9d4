"""Invite codes on MongoDB (``invites``): what sign-up consumes when
``SEEDSERVE_SIGNUP=invite``.

A code is a 192-bit random string shown once to the admin; like API tokens it
is stored as its SHA-256 (the document's ``_id``). A sign-up consumes it with
one conditional ``find_one_and_update`` (unused, if single-use),
so of two sign-ups racing for one single-use code exactly one wins. Dates are
only ever inserted, never ``$set`` (the embedded server stores a ``$set``
date as a string).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict, cast

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from seedserve.errors import Forbidden, NotFound
from seedserve.registry.key_hashes import hash_key
from seedserve.registry.store import database_errors

__all__ = ["INVITE_PREFIX", "InviteDoc", "InviteStore"]

INVITE_PREFIX = "inv_"
_ASK = "ask the admin for a new one (`seedserve invites create`)"


class InviteDoc(TypedDict):
    _id: str  # sha256 of the code
    id: str  # the public id, for listing and revoking
    label: str
    created_at: datetime
    expires_at: datetime | None
    single_use: bool
    uses: int
    used_by: list[str]


def _now() -> datetime:
    return datetime.now(UTC)


class InviteStore:
    """The admin's invite codes. ``clock`` gives the current time (injected so
    expiry is testable without waiting)."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], clock: Callable[[], datetime] = _now) -> None:
        self._invites = db["invites"]
        self._clock = clock

    async def create(self, label: str, expires_in: timedelta | None, single_use: bool) -> tuple[str, InviteDoc]:
        """A new invite: (the code, shown once; its document)."""
        code = INVITE_PREFIX + secrets.token_urlsafe(24)
        now = self._clock()
        doc = InviteDoc(_id=hash_key(code), id="i_" + secrets.token_hex(6), label=label, created_at=now,
                        expires_at=None if expires_in is None else now + expires_in, single_use=single_use,
                        uses=0, used_by=[])
        async with database_errors():
            await self._invites.insert_one(dict(doc))
        return code, doc

    async def list(self) -> list[InviteDoc]:
        async with database_errors():
            docs = [cast(InviteDoc, doc) async for doc in self._invites.find({})]
        return sorted(docs, key=lambda doc: doc["created_at"])

    async def revoke(self, invite_id: str) -> InviteDoc:
        async with database_errors():
            doc = await self._invites.find_one_and_delete({"id": invite_id})
        if doc is None:
            raise NotFound(f"there is no invite {invite_id!r}; list them with `seedserve invites list`",
                           input="invite_id")
        return cast(InviteDoc, doc)

    async def consume(self, code: str, username: str) -> InviteDoc:
        """Use ``code`` for ``username``'s sign-up, atomically; :class:`Forbidden`
        saying why when it is unknown (or revoked), expired or used up."""
        key = hash_key(code)
        async with database_errors():
            found = await self._invites.find_one({"_id": key})
        if found is None:
            raise Forbidden(f"the invite code is not valid (mistyped or revoked?); {_ASK}", input="invite")
        # Expiry is checked here, not in the update's filter: time only moves
        # forward, and the embedded server compares dates unreliably in filters.
        expires = found["expires_at"]
        if expires is not None and expires <= self._clock():
            raise Forbidden(f"the invite code expired at {expires.isoformat()}; {_ASK}", input="invite")
        # The use itself is one conditional update: of racing sign-ups, one matches.
        unused = {"_id": key, "$or": [{"single_use": False}, {"uses": 0}]}
        async with database_errors():
            doc = await self._invites.find_one_and_update(
                unused, {"$inc": {"uses": 1}, "$push": {"used_by": username}}, return_document=ReturnDocument.AFTER)
        if doc is None:
            raise Forbidden(f"the invite code has already been used; {_ASK}", input="invite")
        return cast(InviteDoc, doc)

    async def give_back(self, code: str, username: str) -> None:
        """Undo :meth:`consume` when the account could not be created after all."""
        async with database_errors():
            await self._invites.update_one({"_id": hash_key(code), "used_by": username},
                                           {"$inc": {"uses": -1}, "$pull": {"used_by": username}})
