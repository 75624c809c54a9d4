"""Reading a small JSON object body, with errors that say what to send."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from seedserve.errors import InputTooLarge, InvalidInput

__all__ = ["json_object"]

MAX_JSON_BODY = 64 * 1024


async def json_object(request: Request, max_bytes: int = MAX_JSON_BODY) -> dict[str, Any]:
    """The body as a JSON object; 413 past ``max_bytes``, 400 for anything else."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise InputTooLarge(f"the JSON body exceeds {max_bytes:,} bytes", input="body", limit=max_bytes)
    try:
        value = json.loads(body) if body else {}
    except (ValueError, RecursionError):
        raise InvalidInput("the body is not valid JSON; send a JSON object", input="body") from None
    if not isinstance(value, dict):
        raise InvalidInput("the body must be a JSON object", input="body")
    return value
