"""What the manager's and the master's OpenAPI 3.1 documents share: the error
body, one table row per operation, and the document built from a table and
the pydantic models its operations take and answer."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    #: What answers an operation: its ``response`` model, or a ready response (``response`` None).
    Endpoint = Callable[[Request], Awaitable[BaseModel | Response]]

__all__ = ["Error", "ErrorBody", "Operation", "allowed_methods", "build_document", "content", "ref"]


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="Stable, machine-readable: invalid_input, not_found, unauthenticated, ...")
    message: str = Field(description="What was wrong and what to do.")
    input: str | None = Field(default=None, description="The input or field at fault, when there is one.")


class Error(BaseModel):
    error: ErrorBody


@dataclass(frozen=True)
class Operation:
    method: str
    #: The route's path; a parameter may name a Starlette convertor (``{version:int}``).
    path: str
    summary: str
    #: The success body: a pydantic model, a ready "content" map, or None for any JSON object.
    response: type[BaseModel] | dict[str, Any] | None
    status: int = 200
    body: type[BaseModel] | dict[str, Any] | None = None
    errors: tuple[int, ...] = (400, 401, 403, 404)
    auth: bool = True
    tags: tuple[str, ...] = field(default=("models",))
    #: False where every field of the body has a default (the body may be left out).
    body_required: bool = True
    #: Request headers: name -> description; required unless the name ends in "?".
    headers: tuple[tuple[str, str], ...] = ()
    #: Error statuses that come with a Retry-After header.
    retry_after: tuple[int, ...] = ()
    #: What answers it, where the table is also the app's routes.
    endpoint: Endpoint | None = None

    @property
    def document_path(self) -> str:
        """The path as the document writes it: ``{version}``, no convertor."""
        return re.sub(r"\{(\w+):\w+\}", r"{\1}", self.path)


def ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def content(body: type[BaseModel] | dict[str, Any], media_type: str = "application/json") -> dict[str, Any]:
    """A "content" map: ``body``'s schema as ``media_type``, or ``body`` if it is one already."""
    if isinstance(body, dict):
        return body
    return {media_type: {"schema": ref(body)}}


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                "schema": {"type": "string", "pattern": "^[0-9]+$"}}}


def _operation(op: Operation, params: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    path = op.document_path
    path_params = [part.strip("{}") for part in path.split("/") if part.startswith("{")]
    answer: dict[str, Any] = {"description": op.summary}
    answer["content"] = content(op.response) if op.response is not None else {
        "application/json": {"schema": {"type": "object"}}}
    responses: dict[str, Any] = {str(op.status): answer}
    for status in (*op.errors, *((401,) if op.auth else ())):
        responses[str(status)] = {"description": "Error", "content": content(Error)}
        if status in op.retry_after:
            responses[str(status)]["headers"] = _RETRY_AFTER
    headers = [{"name": h.rstrip("?"), "in": "header", "required": not h.endswith("?"), "description": what,
                "schema": {"type": "string", "minLength": 1}} for h, what in op.headers]
    doc: dict[str, Any] = {
        "operationId": f"{op.method}_{path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}",
        "summary": op.summary,
        "tags": list(op.tags),
        "parameters": [{"name": p, "in": "path", "required": True, "schema": params[p]} for p in path_params]
        + headers,
        "responses": responses,
    }
    if op.body is not None:
        doc["requestBody"] = {"required": op.body_required, "content": content(op.body)}
    if not op.auth:
        doc["security"] = [{}]
    return doc


def build_document(*, info: dict[str, Any], operations: Iterable[Operation], schemas: Iterable[type[BaseModel]],
                   params: Mapping[str, dict[str, Any]], security: dict[str, Any],
                   public_security: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An OpenAPI 3.1 document: one path item per operation of the table, the
    JSON schemas of ``schemas`` (and the error body) as components, and the
    ``security`` schemes, all required unless an operation says ``auth=False``
    (then ``public_security`` applies: none by default)."""
    models: list[type[BaseModel]] = [Error, *schemas]
    _, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/components/schemas/{model}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        doc = _operation(op, params)
        if not op.auth and public_security is not None:
            doc["security"] = public_security
        paths.setdefault(op.document_path, {})[op.method] = doc
    return {
        "openapi": "3.1.0",
        "info": info,
        "servers": [{"url": "/"}],
        "security": [{name: []} for name in security],
        "components": {"securitySchemes": security, "schemas": definitions["$defs"]},
        "paths": paths,
    }


def allowed_methods(document: Mapping[str, Any], path: str) -> list[str] | None:
    """The methods ``document`` gives ``path`` (HEAD with GET), or None for a
    path it does not describe: the ``Allow`` header of a 405."""
    for template, operations in document["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            methods = sorted(m.upper() for m in operations)
            return ["HEAD", *methods] if "GET" in methods else methods
    return None
