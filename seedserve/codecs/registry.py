"""Codecs registered by input kind.

A codec turns one wire value into what the model gets (an array, or named
arrays for structured kinds), and builds a sample of that for test runs. The
registry is strict: registering a kind twice or asking for an unknown kind
raises; it never falls back to passing raw bytes through.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Codec", "Decoded", "register", "codec_for", "kinds"]

#: What a decoder returns: one array, or named arrays in the model's argument order.
Decoded = np.ndarray | dict[str, np.ndarray]


@dataclass(frozen=True)
class Codec:
    """The decoder of one kind and its sample builder."""

    kind: str
    decode: Callable[[Any, Any], Decoded]
    sample: Callable[[Any, int], Decoded]


_CODECS: dict[str, Codec] = {}


def register(kind: str, decode: Callable[[Any, Any], Decoded], sample: Callable[[Any, int], Decoded]) -> None:
    """Register the codec of ``kind``; a second registration is a bug and raises."""
    if kind in _CODECS:
        raise ValueError(f"a codec for kind {kind!r} is already registered")
    _CODECS[kind] = Codec(kind, decode, sample)


def codec_for(kind: str) -> Codec:
    """The codec of ``kind``; raises ``LookupError`` naming the known kinds."""
    try:
        return _CODECS[kind]
    except KeyError:
        raise LookupError(f"no codec for input kind {kind!r}; known kinds: {sorted(_CODECS)}") from None


def kinds() -> list[str]:
    """The registered kinds, sorted."""
    return sorted(_CODECS)
