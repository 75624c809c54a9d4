"""The per-query library that runs in front of a model inside that model's own
ingress replica: read the body within its limit, authenticate the key, parse
JSON, and turn errors into JSON responses. Keeping it here instead of in a
separate ingress deployment saves one Ray hop per query.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from seedserve.errors import (
    InputTooLarge,
    InvalidInput,
    MethodNotAllowed,
    Overloaded,
    RateLimited,
    SeedserveError,
    Unauthenticated,
    http_status,
    oip_error_body,
)
from seedserve.ratelimit import WRONG_KEYS_PER_MINUTE, FailureLimiter
from seedserve.registry.key_hashes import key_matches

__all__ = [
    "KeyCache", "bearer_key", "bearer_key_from", "not_accepted", "check_key", "wrong_key_limiter", "read_body",
    "parse_json", "load_json",
    "error_headers", "error_parts", "error_response", "oip_error_parts", "oip_error_response", "relative_path",
    "V2_BELOW_MODEL", "public_v2_path",
]

logger = logging.getLogger("seedserve.query")



#: Right keys a replica remembers (a model has a handful).
_MAX_KNOWN_KEYS = 64


def not_accepted(name: str) -> Unauthenticated:
    """The one answer for a model that does not exist, one not served yet,
    and one that does not accept the caller's key, whichever of the master
    and the model's replica gives it: an anonymous caller cannot tell which
    models exist."""
    return Unauthenticated(
        f"no model named {name!r} accepts this key; check the model name and the key", input="authorization"
    )


def check_key(name: str, key: str, hashes: list[str], wrong: FailureLimiter) -> None:
    """Raise :func:`not_accepted` unless ``key`` hashes to one of ``hashes``
    (constant-time), or :class:`RateLimited` once ``wrong`` has counted too
    many wrong keys for ``name`` in the last minute. A right key is always
    served, so guessing cannot lock the model's clients out."""
    if key_matches(key, hashes):
        return
    wrong.check(model=name)
    wrong.failed(model=name)
    raise not_accepted(name)


def wrong_key_limiter(per_minute: int = WRONG_KEYS_PER_MINUTE) -> FailureLimiter:
    """Counts wrong keys per model name, ``per_minute`` of them answered 401, then 429."""
    return FailureLimiter({"model": per_minute}, what="wrong keys for this model")


class KeyCache:
    """The model's key hashes, refreshed in the background (from the master)
    so a revoked key stops working within one refresh interval."""

    def __init__(self, hashes: list[str], fetch: Callable[[], Awaitable[list[str]]], interval_s: float,
                 *, model: str, wrong_keys_per_minute: int = WRONG_KEYS_PER_MINUTE) -> None:
        self._model = model
        self._hashes = list(hashes)
        # Keys that matched the current hashes: each is hashed once, not per query.
        self._known: set[str] = set()
        self._fetch = fetch
        self._interval_s = interval_s
        self._wrong = wrong_key_limiter(wrong_keys_per_minute)

    def check(self, key: str) -> None:
        """:func:`check_key` against the model's current hashes; a key that
        matched is remembered, so it is hashed once, not per query."""
        if key in self._known:
            return
        check_key(self._model, key, self._hashes, self._wrong)
        if len(self._known) < _MAX_KNOWN_KEYS:
            self._known.add(key)

    async def refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                hashes = await self._fetch()
            except Exception:  # keep the last known keys while the database is away
                logger.warning("could not refresh keys; keeping the cached ones", exc_info=True)
                continue
            if hashes != self._hashes:
                # A revoked key must not stay known: start over from the new hashes.
                self._hashes, self._known = hashes, set()


def bearer_key(request: Request) -> str:
    """The key from ``Authorization: Bearer <key>``."""
    return bearer_key_from(request.headers.get("authorization", ""))


def bearer_key_from(header: str) -> str:
    """The key from an ``Authorization`` header's value."""
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthenticated("missing key; send the model's key as 'Authorization: Bearer <key>'")
    return key.strip()


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused as soon as it is known to exceed ``max_bytes``
    (from Content-Length, or while streaming when there is none)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(int(declared), max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(size, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, max_bytes: int) -> InputTooLarge:
    return InputTooLarge(
        f"the body ({size:,} bytes so far) exceeds the limit of {max_bytes:,} bytes; "
        "send less data or raise max_body_bytes in the manifest",
        limit=max_bytes,
    )


def parse_json(body: bytes) -> Any:
    """Parse a JSON body; an empty or malformed one is the client's error."""
    if not body:
        raise InvalidInput("the body is empty; send a JSON object whose keys are input names")
    return load_json(body, "the body")


def load_json(data: bytes | str, what: str, input: str | None = None) -> Any:
    """``json.loads`` whose every failure is the client's: malformed JSON,
    invalid UTF-8, and nesting deep enough to exhaust the parser's stack."""
    try:
        return json.loads(data)
    except RecursionError:
        raise InvalidInput(f"{what} is nested too deeply to parse; flatten it", input=input) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}", input=input) from exc


def error_headers(exc: SeedserveError) -> dict[str, str]:
    if isinstance(exc, Unauthenticated):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, (Overloaded, RateLimited)):
        return {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, MethodNotAllowed):
        return {"Allow": ", ".join(exc.allow)}
    return {}


def error_parts(exc: SeedserveError) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and JSON body of ``exc``'s answer. Every error answer
    is rendered here, so that the master and a model's replica answer the
    same error with the same bytes."""
    body = json.dumps(exc.to_body(), ensure_ascii=False, separators=(",", ":")).encode()
    return http_status(exc), {"content-type": "application/json", **error_headers(exc)}, body


def error_response(exc: SeedserveError) -> Response:
    status, headers, body = error_parts(exc)
    return Response(body, status_code=status, headers=headers)


def oip_error_parts(exc: SeedserveError) -> tuple[int, dict[str, str], bytes]:
    """:func:`error_parts` for ``/v2``: the same status and headers, the body in
    the Open Inference Protocol's form (:func:`seedserve.errors.oip_error_body`)."""
    body = json.dumps(oip_error_body(exc), ensure_ascii=False, separators=(",", ":")).encode()
    return http_status(exc), {"content-type": "application/json", **error_headers(exc)}, body


def oip_error_response(exc: SeedserveError) -> Response:
    status, headers, body = oip_error_parts(exc)
    return Response(body, status_code=status, headers=headers)


def relative_path(request: Request) -> str:
    """The path below the application's route prefix (Serve sets it as root_path)."""
    path: str = request.scope.get("path", "")
    root: str = request.scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


#: Where a model's application answers the Open Inference Protocol, below its
#: route prefix: the ingress rewrites ``/v2/models/<name>/infer`` to
#: ``/models/<name>/v2/infer`` (seedserve.cluster.haproxy), so that it reaches
#: the model's replica in one hop, as native queries do.
V2_BELOW_MODEL = "/v2"


def public_v2_path(path: str) -> str:
    """The Open Inference Protocol path a model-relative ``/v2`` path stands
    for (``/models/<name>/v2/infer`` -> ``/v2/models/<name>/infer``), else ``path``."""
    parts = path.split("/", 4)  # "", "models", name, "v2", rest
    if len(parts) < 4 or parts[0] or parts[1] != "models" or not parts[2] or parts[3] != V2_BELOW_MODEL[1:]:
        return path
    return f"{V2_BELOW_MODEL}/models/{parts[2]}" + (f"/{parts[4]}" if len(parts) > 4 else "")
