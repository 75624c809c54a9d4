"""Accounts on MongoDB: users (``users``), dashboard sessions (``sessions``)
and API tokens (``tokens``).

Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106's second
recommended profile); a password is never stored or logged. Session ids and
API tokens are 256-bit random strings, so they are stored as a SHA-256 (the
document's ``_id``), which makes the lookup a single indexed read.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, NotRequired, TypedDict, cast

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from seedserve.api import USERNAME_PATTERN
from seedserve.errors import AlreadyExists, InvalidInput, NotFound
from seedserve.registry.key_hashes import hash_key
from seedserve.registry.store import ADMIN, database_errors

__all__ = ["AccountStore", "Session", "TokenDoc", "UserDoc", "TOKEN_PREFIX", "USERNAME_PATTERN"]

TOKEN_PREFIX = "st_"
_USERNAME = re.compile(USERNAME_PATTERN)
MIN_PASSWORD = 8
MAX_PASSWORD = 256

_hasher = PasswordHasher()
#: Verified against when the user does not exist, so that a wrong username
#: takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserDoc(TypedDict):
    _id: str  # the username
    password: str  # an Argon2id hash
    created_at: datetime
    #: Set by the admin: may register handler packages under SEEDSERVE_HANDLERS=trusted.
    trusted: NotRequired[bool]


class TokenDoc(TypedDict):
    _id: str  # sha256 of the token
    id: str  # the public id, for listing and revoking
    user: str
    label: str
    created_at: datetime


class Session(TypedDict):
    _id: str  # sha256 of the cookie's session id
    user: str | None  # None before sign-in (the session still carries a CSRF token)
    csrf: str
    created_at: datetime
    expires_at: datetime


def check_username(username: Any) -> str:
    if not isinstance(username, str) or not _USERNAME.match(username):
        raise InvalidInput(
            "a username is 3-32 characters: lower-case letters, digits, '_', '.', '-', starting with a letter or digit",
            input="username",
        )
    if username == ADMIN:
        # The admin token's account: a password account of that name would own the admin's models.
        raise AlreadyExists(f"the username {ADMIN!r} is reserved for the admin token; choose another",
                            input="username")
    return username


def check_password(password: Any) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(f"a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters", input="password")
    return password


class AccountStore:
    """Users, their sessions and their API tokens."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], session_ttl: timedelta = timedelta(hours=12)) -> None:
        self._users = db["users"]
        self._sessions = db["sessions"]
        self._tokens = db["tokens"]
        self._session_ttl = session_ttl

    # users

    async def create_user(self, username: str, password: str) -> UserDoc:
        check_username(username)
        check_password(password)
        # Argon2 is deliberately slow (tens of ms): off the event loop.
        hashed = await anyio.to_thread.run_sync(_hasher.hash, password)
        doc = UserDoc(_id=username, password=hashed, created_at=datetime.now(UTC))
        try:
            async with database_errors():
                await self._users.insert_one(dict(doc))
        except DuplicateKeyError:
            raise AlreadyExists(f"the username {username!r} is taken; choose another", input="username") from None
        return doc

    async def verify_password(self, username: str, password: str) -> bool:
        """Whether ``password`` is ``username``'s; as slow for an unknown user."""
        async with database_errors():
            doc = await self._users.find_one({"_id": username}) if isinstance(username, str) else None
        stored = doc["password"] if doc else _DUMMY_HASH

        def verify() -> bool:
            try:
                return bool(_hasher.verify(stored, password))
            except (VerificationError, InvalidHashError):
                return False

        ok = await anyio.to_thread.run_sync(verify)
        return ok and doc is not None

    async def set_trusted(self, username: str, trusted: bool) -> None:
        """Mark ``username`` trusted (may register handler packages) or not."""
        async with database_errors():
            found = await self._users.update_one({"_id": username}, {"$set": {"trusted": trusted}})
        if found.matched_count == 0:
            raise NotFound(f"there is no account {username!r}", input="username")

    async def is_trusted(self, username: str) -> bool:
        async with database_errors():
            doc = await self._users.find_one({"_id": username}, {"trusted": 1})
        return bool(doc and doc.get("trusted"))

    # sessions

    async def new_session(self, user: str | None) -> tuple[str, Session]:
        """A fresh session (id, document); the id goes only into the cookie."""
        sid = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        doc = Session(_id=hash_key(sid), user=user, csrf=secrets.token_urlsafe(32), created_at=now,
                      expires_at=now + self._session_ttl)
        async with database_errors():
            await self._sessions.insert_one(dict(doc))
        return sid, doc

    async def session(self, sid: str) -> Session | None:
        async with database_errors():
            doc = await self._sessions.find_one({"_id": hash_key(sid)})
        if doc is None or doc["expires_at"] < datetime.now(UTC):
            return None
        return cast(Session, doc)

    async def end_session(self, sid: str) -> None:
        async with database_errors():
            await self._sessions.delete_one({"_id": hash_key(sid)})

    # API tokens

    async def create_token(self, user: str, label: str) -> tuple[str, TokenDoc]:
        """A new API token for ``user``: (the token, shown once; its document)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        doc = TokenDoc(_id=hash_key(token), id="t_" + secrets.token_hex(6), user=user, label=label,
                       created_at=datetime.now(UTC))
        async with database_errors():
            await self._tokens.insert_one(dict(doc))
        return token, doc

    async def token_user(self, token: str) -> str | None:
        """The user an API token belongs to, or None."""
        async with database_errors():
            doc = await self._tokens.find_one({"_id": hash_key(token)}, {"user": 1})
        return None if doc is None else str(doc["user"])

    async def tokens(self, user: str) -> list[TokenDoc]:
        async with database_errors():
            docs = [cast(TokenDoc, doc) async for doc in self._tokens.find({"user": user})]
        return sorted(docs, key=lambda doc: doc["created_at"])

    async def revoke_token(self, user: str, token_id: str) -> TokenDoc:
        async with database_errors():
            doc = await self._tokens.find_one_and_delete({"user": user, "id": token_id})
        if doc is None:
            raise NotFound(f"you have no token {token_id!r}; list them with GET /api/tokens", input="token_id")
        return cast(TokenDoc, doc)
