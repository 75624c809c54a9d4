"""The manager's OpenAPI 3.1 document, built from pydantic models of what each
``/api`` operation takes and answers, and the docs page that renders it.

The operation table below is the one place an operation is described; a test
checks that every ``/api`` route of the app is in it and that responses match.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from seedserve import __version__, openapi
from seedserve.openapi import Operation, content
from seedserve.registry.accounts import USERNAME_PATTERN

__all__ = ["OPERATIONS", "allowed_methods", "openapi_document"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class SignUp(BaseModel):
    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=8, max_length=256)
    invite: str | None = Field(default=None, max_length=128,
                               description="An invite code from the admin; needed when SEEDSERVE_SIGNUP=invite.")


class InviteRequest(BaseModel):
    label: str = Field(default="invite", min_length=1, max_length=64)
    expires_in_s: int | None = Field(default=None, ge=1, le=365 * 24 * 3600,
                                     description="Seconds until the code expires; null: never.")
    single_use: bool = Field(default=True, description="False: the code signs up any number of accounts.")


class Invite(BaseModel):
    id: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    single_use: bool
    uses: int
    used_by: list[str]


class InviteCreated(Invite):
    code: str = Field(description="The invite code. Shown only this once; only its hash is stored.")
    message: str


class InviteList(BaseModel):
    invites: list[Invite]


class TrustRequest(BaseModel):
    trusted: bool = Field(description="Whether the account may register handler packages (SEEDSERVE_HANDLERS=trusted).")


class Trust(BaseModel):
    username: str
    trusted: bool


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
    recommendation: dict[str, Any] | None = Field(description="Cheapest worker type meeting the objective, or why "
                                                              "none.")
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
    SignUp, InviteRequest, Invite, InviteCreated, InviteList, TrustRequest, Trust, User, Me, TokenRequest, Token,
    TokenCreated, TokenList, Revoked, KeyRequest, Key, KeyCreated,
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


OPERATIONS: list[Operation] = [
    Operation("post", "/api/users", "Sign up (as SEEDSERVE_SIGNUP allows), or create an account as the admin", User,
              201, SignUp, (400, 401, 403, 409, 413), auth=False, tags=("accounts",)),
    Operation("post", "/api/invites", "Create an invite code (admin; shown once)", InviteCreated, 201, InviteRequest,
              (400, 401, 403, 413), tags=("admin",), body_required=False),
    Operation("get", "/api/invites", "List invite codes (admin; codes are never shown again)", InviteList,
              tags=("admin",)),
    Operation("delete", "/api/invites/{invite_id}", "Revoke an invite code (admin)", Revoked, tags=("admin",)),
    Operation("put", "/api/users/{username}/trusted", "Trust an account with handler packages, or stop (admin)",
              Trust, body=TrustRequest, errors=(400, 401, 403, 404, 413), tags=("admin",)),
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

_PARAMS: dict[str, dict[str, Any]] = {
    "name": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_-]{0,62}$"},
    "version": {"type": "integer", "minimum": 0},
    "key_id": {"type": "string"},
    "token_id": {"type": "string"},
    "invite_id": {"type": "string"},
    "username": {"type": "string"},
}


def allowed_methods(path: str) -> list[str] | None:
    """The methods the document gives ``path``: the ``Allow`` header of a 405."""
    return openapi.allowed_methods(openapi_document(), path)


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the manager's API."""
    document = openapi.build_document(
        info={
            "title": "seedserve manager",
            "version": __version__,
            "description": "Register PyTorch models, manage their versions and keys, read their profiles. "
            "Authenticate with 'Authorization: Bearer <API token>' (POST /api/tokens), or a dashboard session "
            "cookie plus the X-CSRF-Token header on requests that change something. Errors are "
            '{"error": {"code", "message", "input"}}.',
        },
        operations=OPERATIONS,
        schemas=_SCHEMAS,
        params=_PARAMS,
        security={
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "seedserve_session"},
        },
        public_security=[{}, {"bearer": []}, {"session": []}],
    )
    document["paths"]["/healthz"] = {"get": {
        "operationId": "get_healthz", "summary": "Readiness: manager, database and master health", "tags": ["health"],
        "security": [{}], "responses": {"200": {"description": "Health", "content": content(Health)},
                                        "503": {"description": "A component is down; 'down' names it",
                                                "content": content(Health)}}}}
    document["paths"]["/livez"] = {"get": {
        "operationId": "get_livez", "summary": "Liveness: 200 while the manager answers", "tags": ["health"],
        "security": [{}], "responses": {"200": {"description": "Live", "content": {"application/json": {
            "schema": {"type": "object", "properties": {"live": {"type": "boolean"}}, "required": ["live"]}}}}}}}
    return document
