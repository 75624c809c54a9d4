"""Codecs registered by input kind.

A codec turns one wire value into the array the model gets. The registry is
strict: registering a kind twice or asking for an unknown kind raises; it
never falls back to passing raw bytes through.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

__all__ = ["Codec", "register", "codec_for", "kinds"]


class Codec(Protocol):
    """Decodes the wire value of one input into an array."""

    def __call__(self, value: Any, spec: Any) -> np.ndarray: ...


_CODECS: dict[str, Codec] = {}


def register(kind: str, codec: Codec) -> None:
    """Register ``codec`` for ``kind``; a second registration is a bug and raises."""
    if kind in _CODECS:
        raise ValueError(f"a codec for kind {kind!r} is already registered")
    _CODECS[kind] = codec


def codec_for(kind: str) -> Codec:
    """The codec of ``kind``; raises ``LookupError`` naming the known kinds."""
    try:
        return _CODECS[kind]
    except KeyError:
        raise LookupError(f"no codec for input kind {kind!r}; known kinds: {sorted(_CODECS)}") from None


def kinds() -> list[str]:
    """The registered kinds, sorted."""
    return sorted(_CODECS)
