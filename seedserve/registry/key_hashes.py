"""Secret keys: generated once, shown once, stored only as a hash.

Keys are 256-bit random strings, so a single SHA-256 is the right hash: a slow
password KDF protects low-entropy secrets and would only add latency to every
query. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["new_key", "hash_key", "key_matches", "KEY_PREFIX"]

KEY_PREFIX = "sk_"


def new_key() -> str:
    """A fresh secret key (shown to its owner once)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of ``key``: hex SHA-256."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_matches(key: str, hashes: list[str]) -> bool:
    """Whether ``key`` hashes to one of ``hashes``, comparing every entry in constant time."""
    digest = hash_key(key)
    found = False
    for stored in hashes:
        # No early exit: the time taken does not depend on which entry matched.
        found |= hmac.compare_digest(digest, stored)
    return found
