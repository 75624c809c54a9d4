"""Reading a small JSON object body, with errors that say what to send: as a
plain object, or parsed with the request model of :mod:`seedserve.api` whose
validation errors become :class:`InvalidInput` naming the field."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from seedserve.errors import InputTooLarge, InvalidInput

__all__ = ["invalid_request", "json_body", "json_object", "read_limited"]

MAX_JSON_BODY = 64 * 1024

RequestModel = TypeVar("RequestModel", bound=BaseModel)


async def read_limited(request: Request, max_bytes: int, what: str) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``max_bytes``
    (while streaming: an oversized body is never held whole)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise InputTooLarge(f"{what} takes at most {max_bytes:,} bytes", input="body", limit=max_bytes)
    return bytes(body)


async def json_object(request: Request, max_bytes: int = MAX_JSON_BODY, *, input: str = "body") -> dict[str, Any]:
    """The body as a JSON object (an empty body: ``{}``); 413 past
    ``max_bytes``, 400 for anything else, blaming ``input``."""
    body = await read_limited(request, max_bytes, "a JSON body")
    try:
        value = json.loads(body) if body else {}
    except (ValueError, RecursionError):
        raise InvalidInput("the body is not valid JSON; send a JSON object", input=input) from None
    if not isinstance(value, dict):
        raise InvalidInput("the body must be a JSON object", input=input)
    return value


async def json_body(request: Request, model: type[RequestModel], *, input: str = "body") -> RequestModel:
    """The body parsed as ``model``: its size checked while it streams in,
    then JSON, then each field; every failure a 4xx that names what to send.
    ``input``: what a body that is not a JSON object is blamed on."""
    value = await json_object(request, input=input)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise invalid_request(exc, model) from None


def invalid_request(exc: ValidationError, model: type[BaseModel]) -> InvalidInput:
    """A request model's validation error as the API's error: the first bad
    field in ``input``, what was wrong with it and what the field takes in
    the message, every problem in ``problems``."""
    errors = exc.errors(include_url=False)
    problems = [{"field": ".".join(str(part) for part in err["loc"]) or "body", "message": err["msg"]}
                for err in errors]
    first, name = problems[0], problems[0]["field"].split(".")[0]
    got = "" if errors[0]["type"] == "missing" else f" (got {_short(errors[0]['input'])})"
    field = model.model_fields.get(name)
    wanted = f"; '{name}' takes: {field.description}" if field is not None and field.description else ""
    return InvalidInput(f"field {first['field']!r}: {first['message']}{got}{wanted}", input=first["field"],
                        problems=problems)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
