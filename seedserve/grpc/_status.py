"""seedserve's answers in gRPC's shape: which status code an error takes,
and the message and trailing metadata it carries."""

from __future__ import annotations

import json
from typing import Any

import grpc

from seedserve.errors import SeedserveError, http_status

__all__ = ["GRPC_STATUS", "grpc_status", "error_details", "local_error"]

#: The HTTP status of a seedserve error (errors.HTTP_STATUS) -> its gRPC code.
#: One table: errors raised here and errors the model's replica answered
#: (as status, headers and JSON body) both go through it.
GRPC_STATUS: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def grpc_status(http: int) -> grpc.StatusCode:
    """The gRPC code for an answer of HTTP status ``http``: the table's, else
    INVALID_ARGUMENT for another 4xx and INTERNAL for another 5xx."""
    if http in GRPC_STATUS:
        return GRPC_STATUS[http]
    return grpc.StatusCode.INVALID_ARGUMENT if http < 500 else grpc.StatusCode.INTERNAL


#: A gRPC error: its status code, its message, and its trailing metadata.
ErrorDetails = tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]


def error_details(status: int, headers: dict[str, str], body: bytes) -> ErrorDetails:
    """Code, message and trailing metadata for an error answer of the model's
    replica. The JSON body is either seedserve's ``{"error": {"code",
    "message", "input"}}`` or the protocol's ``{"error": "<message>"}``
    (with ``code`` and ``input`` beside it); both are read."""
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    fields: dict[str, Any] = error if isinstance(error, dict) else (parsed if isinstance(parsed, dict) else {})
    message = error if isinstance(error, str) else str(fields.get("message") or f"HTTP {status}")
    trailers = [("seedserve-error-code", str(fields["code"]))] if isinstance(fields.get("code"), str) else []
    if isinstance(fields.get("input"), str):
        trailers.append(("seedserve-error-input", fields["input"]))
    if "retry-after" in {k.lower() for k in headers}:
        trailers.append(("retry-after", next(v for k, v in headers.items() if k.lower() == "retry-after")))
    return grpc_status(status), message, tuple(trailers)


def local_error(exc: SeedserveError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    """Code, message and trailing metadata for an error raised in this process."""
    trailers = [("seedserve-error-code", exc.code)]
    if exc.input is not None:
        trailers.append(("seedserve-error-input", exc.input))
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after is not None:
        trailers.append(("retry-after", str(retry_after)))
    return grpc_status(http_status(exc)), exc.message, tuple(trailers)
