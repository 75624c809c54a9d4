"""The one error tree of seedserve.

Every part raises these; the manager and the master turn them into HTTP
responses through :data:`HTTP_STATUS` (the only place a status code is chosen
for a domain error), and the SDK turns the JSON body back into the same class
through :func:`from_body`. This module imports nothing of ours, so the pure
codecs may use it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SeedserveError",
    "InvalidInput",
    "InputTooLarge",
    "UnsupportedMediaType",
    "InputMismatch",
    "BodyTimeout",
    "InvalidManifest",
    "InvalidArtifact",
    "Unauthenticated",
    "NotFound",
    "MethodNotAllowed",
    "AlreadyExists",
    "Conflict",
    "Forbidden",
    "RateLimited",
    "Unavailable",
    "Overloaded",
    "Timeout",
    "HandlerError",
    "ModelError",
    "HTTP_STATUS",
    "http_status",
    "from_body",
    "oip_error_body",
]


class SeedserveError(Exception):
    """Base of every error seedserve raises on purpose.

    ``code`` is stable and machine-readable; ``message`` says what was wrong
    and what to do; ``input`` names the offending input or field when there
    is one.
    """

    code = "error"

    def __init__(self, message: str, *, input: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.input = input
        self.details = details

    def to_body(self) -> dict[str, Any]:
        """The JSON error body: ``{"error": {"code", "message", "input"?, ...}}``."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.input is not None:
            error["input"] = self.input
        error.update(self.details)
        return {"error": error}

    def to_oip_body(self) -> dict[str, Any]:
        """The Open Inference Protocol's error body: ``{"error": "<message>"}``,
        with seedserve's ``code`` (and ``input`` and details) beside it."""
        return oip_error_body(self)


class InvalidInput(SeedserveError):
    """A query's input is malformed or of the wrong type or shape."""

    code = "invalid_input"


class InputTooLarge(InvalidInput):
    """An input or a body is over a declared limit (bytes, elements, pixels...)."""

    code = "input_too_large"


class UnsupportedMediaType(InvalidInput):
    """A file input is in a format the codec does not read."""

    code = "unsupported_media_type"


class BodyTimeout(InvalidInput):
    """The client sent the body too slowly: it had not arrived in full within
    the model's request timeout."""

    code = "body_timeout"


class InputMismatch(InvalidInput):
    """A query is missing a declared input or sends one the model does not take."""

    code = "input_mismatch"


class InvalidManifest(SeedserveError):
    """A model manifest failed validation; ``input`` is the field path."""

    code = "invalid_manifest"


class InvalidArtifact(SeedserveError):
    """A model artifact could not be loaded or run on a sample input."""

    code = "invalid_artifact"


class Unauthenticated(SeedserveError):
    """A key or token is missing or wrong."""

    code = "unauthenticated"


class Forbidden(SeedserveError):
    """The caller is known but the request lacks what it needs (a CSRF token)."""

    code = "forbidden"


class RateLimited(SeedserveError):
    """Too many attempts (failed sign-ins, wrong keys); ``retry_after_s`` goes out as ``Retry-After``."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int, **details: Any) -> None:
        super().__init__(message, retry_after_s=retry_after_s, **details)
        self.retry_after_s = retry_after_s


class NotFound(SeedserveError):
    """No such model (or not one the caller may see)."""

    code = "not_found"


class MethodNotAllowed(SeedserveError):
    """The path exists but not with this method; ``allow`` (the ``Allow``
    header) lists the ones it takes."""

    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: list[str] | None = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.allow = allow or []

    @classmethod
    def on(cls, method: str, path: str, allow: list[str]) -> MethodNotAllowed:
        return cls(f"{method} is not allowed on {path}; use {', '.join(allow)}", allow=allow)


class AlreadyExists(SeedserveError):
    """A model of that name is already registered."""

    code = "already_exists"


class Conflict(SeedserveError):
    """The request conflicts with what is stored: a limit is reached (the
    message says what to remove first)."""

    code = "conflict"


class ModelError(SeedserveError):
    """The model raised on inputs that passed validation: a fault of the model
    or its manifest, not of the query."""

    code = "model_error"


class HandlerError(ModelError):
    """A handler script raised, or its sandboxed process failed: the model
    owner's code, reported to them with the message made in its sandbox."""

    code = "handler_error"


class Unavailable(SeedserveError):
    """A dependency (database, model replica) is down; retry later."""

    code = "unavailable"


class Overloaded(Unavailable):
    """A model's replicas are full: as many queries are running and waiting as
    its manifest allows. ``retry_after_s`` goes out as ``Retry-After``."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after_s: int, **details: Any) -> None:
        super().__init__(message, retry_after_s=retry_after_s, **details)
        self.retry_after_s = retry_after_s


class Timeout(SeedserveError):
    """A query ran past its model's request timeout."""

    code = "timeout"


HTTP_STATUS: dict[type[SeedserveError], int] = {
    InputTooLarge: 413,
    BodyTimeout: 408,
    UnsupportedMediaType: 415,
    InputMismatch: 422,
    InvalidInput: 400,
    InvalidManifest: 422,
    InvalidArtifact: 422,
    Unauthenticated: 401,
    Forbidden: 403,
    RateLimited: 429,
    NotFound: 404,
    MethodNotAllowed: 405,
    AlreadyExists: 409,
    Conflict: 409,
    Overloaded: 503,
    Unavailable: 503,
    Timeout: 504,
    HandlerError: 422,
    ModelError: 500,
    SeedserveError: 400,
}


def http_status(exc: SeedserveError) -> int:
    """The HTTP status for ``exc``: the entry of its nearest class in the table."""
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 400


def oip_error_body(exc: SeedserveError) -> dict[str, Any]:
    """``exc`` as the Open Inference Protocol answers errors (KServe v2, Triton,
    MLServer): ``error`` is the message, a string, which clients such as
    tritonclient raise as their own exception. seedserve's ``code``,
    ``input`` and details stay beside it as extra top-level fields. A gRPC
    front end takes the same ``message`` as its status details."""
    body: dict[str, Any] = {"error": exc.message, "code": exc.code}
    if exc.input is not None:
        body["input"] = exc.input
    body.update({k: v for k, v in exc.details.items() if k != "error"})
    return body


_BY_CODE: dict[str, type[SeedserveError]] = {cls.code: cls for cls in HTTP_STATUS}


def from_body(body: Any, status: int) -> SeedserveError:
    """Rebuild the named error from a JSON error body (used by the SDK)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):  # the Open Inference Protocol's form (see oip_error_body)
        error = {**body, "message": error}
        error.pop("error")
    if not isinstance(error, dict):
        return SeedserveError(f"HTTP {status}: {str(body)[:200]}")
    fields = dict(error)
    cls = _BY_CODE.get(str(fields.pop("code", "")), SeedserveError)
    message = str(fields.pop("message", f"HTTP {status}"))
    input_name = fields.pop("input", None)
    return cls(message, input=input_name, **fields)
