"""The manager's OpenAPI 3.1 document, built from pydantic models of what each
``/api`` operation takes and answers, and the docs page that renders it.

The operation table below is the one place an operation is described; a test
checks that every ``/api`` route of the app is in it and that responses match.
"""

from __future__ import annotations

import re

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from seedserve import __version__
from seedserve.registry.accounts import USERNAME_PATTERN

__all__ = ["OPERATIONS", "allowed_methods", "openapi_document"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(_Open):
    code: str = Field(description="Stable, machine-readable: invalid_input, not_found, unauthenticated, ...")
    message: str = Field(description="What was wrong and what to do.")
    input: str | None = Field(default=None, description="The input or field at fault, when there is one.")


class Error(BaseModel):
    error: ErrorBody


class SignUp(BaseModel):
    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=8, max_length=256)


class User(BaseModel):
    username: str
    created_at: datetime


class Me(BaseModel):
    username: str
    via: Literal["token", "session"]
    models: list[str]


class TokenRequest(BaseModel):
    label: str = Field(default="api", min_length=1, max_length=64)
    username: str | None = Field(default=None, description="With password: sign in (what `seedserve login` does).")
    password: str | None = None


class Token(BaseModel):
    id: str
    label: str
    created_at: datetime


class TokenCreated(Token):
    token: str = Field(description="The API token. Shown only this once; only its hash is stored.")
    message: str


class TokenList(BaseModel):
    tokens: list[Token]


class Revoked(BaseModel):
    revoked: str


class KeyRequest(BaseModel):
    label: str = Field(default="default", min_length=1, max_length=64)


class Key(BaseModel):
    id: str
    label: str
    created_at: datetime


class KeyCreated(Key):
    key: str = Field(description="The model's secret key. Shown only this once; only its hash is stored.")
    message: str
    replaces: str | None = Field(default=None, description="On rotation: the id of the key this one replaced.")


class KeyList(BaseModel):
    keys: list[Key]


class Artifact(BaseModel):
    format: Literal["torchscript", "export", "handler"]
    size: int
    sha256: str


class Model(BaseModel):
    name: str
    version: int = Field(description="The version the model's endpoint serves: the pinned one, else the latest.")
    latest: int
    pinned: int | None
    manifest: dict[str, Any] | None
    artifact: Artifact | None
    versions: list[int]
    keys: list[Key]
    created_at: datetime
    endpoints: dict[str, str]


class Insight(BaseModel):
    profile: dict[str, Any] | None = Field(description="FLOPs, parameters, bytes, ops by kind (FLOPs = 2 x MACs).")
    predictions: list[dict[str, Any]] = Field(description="Predicted latency per worker type and batch size.")
    recommendation: dict[str, Any] | None = Field(description="Cheapest worker type meeting the objective, or why none.")
    measured: dict[str, dict[str, Any]] = Field(description="Latency measured on live traffic, per worker type.")


class ModelDetail(Model, Insight):
    pass


class ModelList(BaseModel):
    models: list[Model]


class Version(BaseModel):
    name: str
    version: int
    serving: bool
    manifest: dict[str, Any]
    artifact: Artifact
    created_at: datetime
    endpoints: dict[str, str]


class VersionList(BaseModel):
    versions: list[Version]


class PinRequest(BaseModel):
    version: int | None = Field(description="The version to serve; null follows the latest.")


class Pinned(BaseModel):
    name: str
    version: int
    pinned: int | None
    latest: int


class Deleted(BaseModel):
    deleted: str
    versions: int


class Registered(Insight):
    name: str
    version: int
    outputs: dict[str, list[int]] = Field(description="Output shapes on the sample built from the declared inputs.")
    key: str | None = Field(description="A new model's secret key, shown once; null for a new version.")
    key_id: str | None = None
    message: str


class Profiled(Insight):
    name: str
    outputs: dict[str, list[int]]


class Cluster(BaseModel):
    master: str = Field(description="'ok', or why the master could not be read.")
    nodes: list[dict[str, Any]]
    worker_types: list[str]
    models: dict[str, dict[str, Any]] = Field(description="Your models: status, replicas, requests/s, p50/p99 ms.")


class Health(_Open):
    status: Literal["ok", "degraded"]


_SCHEMAS: list[type[BaseModel]] = [
    Error, SignUp, User, Me, TokenRequest, Token, TokenCreated, TokenList, Revoked, KeyRequest, Key, KeyCreated,
    KeyList, Model, ModelDetail, ModelList, Version, VersionList, PinRequest, Pinned, Deleted, Registered, Profiled,
    Cluster, Health,
]

_UPLOAD = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["manifest", "artifact"],
            "properties": {
                "manifest": {"type": "string", "description": "The manifest as a JSON string."},
                "format": {"type": "string", "enum": ["torchscript", "export", "handler"], "default": "torchscript"},
                "artifact": {"type": "string", "format": "binary", "description": "The model file."},
            },
        }
    }
}

_QUERY = {
    "application/json": {"schema": {"type": "object", "description": "The query: input name -> value."}},
    "multipart/form-data": {"schema": {"type": "object", "description": "One part per input."}},
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    response: type[BaseModel] | None
    status: int = 200
    body: type[BaseModel] | dict[str, Any] | None = None
    errors: tuple[int, ...] = (400, 401, 403, 404)
    auth: bool = True
    tags: tuple[str, ...] = field(default=("models",))
    #: False where every field of the body has a default (the body may be left out).
    body_required: bool = True
    #: Required request headers: name -> description.
    headers: tuple[tuple[str, str], ...] = ()


OPERATIONS: list[Operation] = [
    Operation("post", "/api/users", "Sign up", User, 201, SignUp, (400, 409, 413), auth=False, tags=("accounts",)),
    Operation("get", "/api/me", "Who you are and your models", Me, tags=("accounts",)),
    Operation("post", "/api/tokens", "Create an API token (signed in, or with username and password)", TokenCreated,
              201, TokenRequest, (400, 401, 403, 413, 429), auth=False, tags=("accounts",), body_required=False),
    Operation("get", "/api/tokens", "List your API tokens", TokenList, tags=("accounts",)),
    Operation("delete", "/api/tokens/{token_id}", "Revoke an API token", Revoked, tags=("accounts",)),
    Operation("post", "/api/models", "Register a model, or the next version of one", Registered, 201, _UPLOAD,
              (400, 401, 403, 409, 413, 422)),
    Operation("get", "/api/models", "List your models", ModelList),
    Operation("get", "/api/models/{name}", "A model: profile, predicted latency, recommendation", ModelDetail),
    Operation("delete", "/api/models/{name}", "Delete a model, its versions and artifacts", Deleted),
    Operation("get", "/api/models/{name}/versions", "List a model's versions", VersionList),
    Operation("get", "/api/models/{name}/versions/{version}", "One version", Version),
    Operation("put", "/api/models/{name}/pin", "Serve a version at the model's endpoint (roll back)", Pinned,
              body=PinRequest),
    Operation("get", "/api/models/{name}/keys", "List a model's keys", KeyList, tags=("keys",)),
    Operation("post", "/api/models/{name}/keys", "Create a key (shown once)", KeyCreated, 201, KeyRequest,
              (400, 401, 403, 404, 409, 413), tags=("keys",), body_required=False),
    Operation("post", "/api/models/{name}/keys/{key_id}/rotate", "Rotate a key: new secret, old one revoked",
              KeyCreated, 201, tags=("keys",)),
    Operation("delete", "/api/models/{name}/keys/{key_id}", "Revoke a key", Revoked, tags=("keys",)),
    Operation("post", "/api/models/{name}/try", "Send a query through the manager (the dashboard's 'try it')",
              None, body=_QUERY, errors=(400, 401, 403, 404, 413, 503),
              headers=(("X-Model-Key", "One of the model's keys, sent on to the master."),)),
    Operation("post", "/api/profile", "Profile an artifact without registering it", Profiled, body=_UPLOAD,
              errors=(400, 401, 403, 413, 422)),
    Operation("get", "/api/cluster", "Nodes, worker types, and your models' replicas and live numbers", Cluster,
              tags=("cluster",)),
]

_PARAMS = {
    "name": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_-]{0,62}$"},
    "version": {"type": "integer", "minimum": 0},
    "key_id": {"type": "string"},
    "token_id": {"type": "string"},
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _content(body: type[BaseModel] | dict[str, Any]) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    return {"application/json": {"schema": _ref(body)}}


def _operation(op: Operation) -> dict[str, Any]:
    params = [part.strip("{}").split(":")[0] for part in op.path.split("/") if part.startswith("{")]
    answer: dict[str, Any] = {"description": op.summary}
    if op.response is not None:
        answer["content"] = _content(op.response)
    else:
        answer["content"] = {"application/json": {"schema": {"type": "object"}}}
    responses: dict[str, Any] = {str(op.status): answer}
    for status in (*op.errors, *((401,) if op.auth else ())):
        responses[str(status)] = {"description": "Error", "content": _content(Error)}
    doc: dict[str, Any] = {
        "operationId": f"{op.method}_{op.path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}",
        "summary": op.summary,
        "tags": list(op.tags),
        "parameters": [{"name": p, "in": "path", "required": True, "schema": _PARAMS[p]} for p in params]
        + [{"name": h, "in": "header", "required": True, "description": what, "schema": {"type": "string", "minLength": 1}}
           for h, what in op.headers],
        "responses": responses,
    }
    if op.body is not None:
        doc["requestBody"] = {"required": op.body_required, "content": _content(op.body)}
    if not op.auth:
        doc["security"] = [{}, {"bearer": []}, {"session": []}]
    return doc


def allowed_methods(path: str) -> list[str] | None:
    """The methods the document gives ``path`` (HEAD with GET), or None for a
    path it does not describe: the ``Allow`` header of a 405."""
    for template, operations in openapi_document()["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            methods = sorted(m.upper() for m in operations)
            return ["HEAD", *methods] if "GET" in methods else methods
    return None


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the manager's API."""
    _, definitions = models_json_schema(
        [(model, "validation") for model in _SCHEMAS], ref_template="#/components/schemas/{model}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    paths["/healthz"] = {"get": {"operationId": "get_healthz", "summary": "Manager and database health",
                                 "tags": ["health"], "security": [{}],
                                 "responses": {"200": {"description": "Health", "content": _content(Health)}}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "seedserve manager",
            "version": __version__,
            "description": "Register PyTorch models, manage their versions and keys, read their profiles. "
            "Authenticate with 'Authorization: Bearer <API token>' (POST /api/tokens), or a dashboard session "
            "cookie plus the X-CSRF-Token header on requests that change something. Errors are "
            '{"error": {"code", "message", "input"}}.',
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "seedserve_session"},
            },
            "schemas": definitions["$defs"],
        },
        "paths": paths,
    }
