"""Reading a small JSON object body, with errors that say what to send."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from seedserve.errors import InputTooLarge, InvalidInput

__all__ = ["json_object", "read_limited"]

MAX_JSON_BODY = 64 * 1024


async def read_limited(request: Request, max_bytes: int, what: str) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``max_bytes``
    (while streaming: an oversized body is never held whole)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise InputTooLarge(f"{what} takes at most {max_bytes:,} bytes", input="body", limit=max_bytes)
    return bytes(body)


async def json_object(request: Request, max_bytes: int = MAX_JSON_BODY) -> dict[str, Any]:
    """The body as a JSON object; 413 past ``max_bytes``, 400 for anything else."""
    body = await read_limited(request, max_bytes, "a JSON body")
    try:
        value = json.loads(body) if body else {}
    except (ValueError, RecursionError):
        raise InvalidInput("the body is not valid JSON; send a JSON object", input="body") from None
    if not isinstance(value, dict):
        raise InvalidInput("the body must be a JSON object", input="body")
    return value
