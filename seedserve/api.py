"""What the manager's API takes and answers, defined once: the manager's
handlers parse requests with these models and answer with them, its OpenAPI
document is built from them, and :class:`~seedserve.client.ManagerClient`
returns them. Only pydantic here, so the client imports it without the server.

Requests (``*Request``, :class:`SignUp`) are validated strictly: ``"1"`` is not
a number and ``1`` is not ``true``. Timestamps go out as
``datetime.isoformat()`` and come back as aware datetimes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

__all__ = [
    "USERNAME_PATTERN", "Artifact", "ArtifactFormat", "Cluster", "Deleted", "Health", "Insight", "Invite",
    "InviteCreated", "InviteList", "InviteRequest", "Key", "KeyCreated", "KeyList", "KeyRequest", "Me", "Model",
    "ModelDetail", "ModelList", "PinRequest", "Pinned", "Profiled", "Registered", "RegistrationForm", "Revoked",
    "SignUp", "Timestamp", "Token", "TokenCreated", "TokenList", "TokenRequest", "Trust", "TrustRequest", "User",
    "Version", "VersionList",
]

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{2,31}$"

#: A datetime written as ``isoformat()`` (``+00:00``, not pydantic's ``Z``): what the API has always sent.
Timestamp = Annotated[datetime, PlainSerializer(lambda when: when.isoformat(), return_type=str, when_used="json")]

_LABEL = "A name for it: 1 to 64 characters."


class _Request(BaseModel):
    model_config = ConfigDict(strict=True)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# accounts

class SignUp(_Request):
    username: str = Field(pattern=USERNAME_PATTERN, description="3-32 characters: lower-case letters, digits, "
                          "'_', '.', '-', starting with a letter or digit.")
    password: str = Field(min_length=8, max_length=256, description="8 to 256 characters.")
    invite: str | None = Field(default=None, max_length=128,
                               description="An invite code from the admin; needed when SEEDSERVE_SIGNUP=invite.")


class User(BaseModel):
    username: str
    created_at: Timestamp


class Me(BaseModel):
    username: str
    via: Literal["token", "session"]
    models: list[str]


class TokenRequest(_Request):
    label: str = Field(default="api", min_length=1, max_length=64, description=_LABEL)
    username: str | None = Field(default=None, description="With password: sign in (what `seedserve login` does).")
    password: str | None = Field(default=None, description="The account's password, with username.")


class Token(BaseModel):
    id: str
    label: str
    created_at: Timestamp


class TokenCreated(Token):
    token: str = Field(description="The API token. Shown only this once; only its hash is stored.")
    message: str


class TokenList(BaseModel):
    tokens: list[Token]


class Revoked(BaseModel):
    revoked: str


# the admin's

class InviteRequest(_Request):
    label: str = Field(default="invite", min_length=1, max_length=64, description=_LABEL)
    expires_in_s: int | None = Field(default=None, ge=1, le=365 * 24 * 3600,
                                     description="Whole seconds until the code expires, 1 to 31,536,000 (a year); "
                                     "null: never.")
    single_use: bool = Field(default=True, description="true or false; false: the code signs up any number of "
                             "accounts.")


class Invite(BaseModel):
    id: str
    label: str
    created_at: Timestamp
    expires_at: Timestamp | None
    single_use: bool
    uses: int
    used_by: list[str]


class InviteCreated(Invite):
    code: str = Field(description="The invite code. Shown only this once; only its hash is stored.")
    message: str


class InviteList(BaseModel):
    invites: list[Invite]


class TrustRequest(_Request):
    trusted: bool = Field(description="true or false: whether the account may register handler packages "
                          "(SEEDSERVE_HANDLERS=trusted).")


class Trust(BaseModel):
    username: str
    trusted: bool


# keys

class KeyRequest(_Request):
    label: str = Field(default="default", min_length=1, max_length=64, description=_LABEL)


class Key(BaseModel):
    id: str
    label: str
    created_at: Timestamp


class KeyCreated(Key):
    key: str = Field(description="The model's secret key. Shown only this once; only its hash is stored.")
    message: str
    replaces: str | None = Field(default=None, description="On rotation: the id of the key this one replaced.")


class KeyList(BaseModel):
    keys: list[Key]


# models and versions

#: How a model's file is packaged (see seedserve.runtime).
ArtifactFormat = Literal["torchscript", "export", "handler"]


class RegistrationForm(BaseModel):
    """``POST /api/models`` and ``/api/profile``, as ``multipart/form-data``.
    The manager reads it as it streams in, under its size limits, and refuses
    a ``format`` the caller may not register as soon as that field has
    arrived: the SDK sends ``manifest`` and ``format`` before the file."""

    manifest: str = Field(description="The manifest as a JSON string.")
    format: ArtifactFormat = Field(default="torchscript", description="How the file is packaged.")
    artifact: bytes = Field(description="The model file.", json_schema_extra={"format": "binary"})


class Artifact(BaseModel):
    format: ArtifactFormat
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
    created_at: Timestamp
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
    created_at: Timestamp
    endpoints: dict[str, str]


class VersionList(BaseModel):
    versions: list[Version]


class PinRequest(_Request):
    version: int | None = Field(description='The version to serve, a whole number; null follows the latest. '
                                'Send {"version": N} to pin version N, {"version": null} to unpin.')


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
    warnings: list[str] = Field(default=[], description="What to change, though it was registered: a deprecated "
                                "artifact format.")


class Profiled(Insight):
    name: str
    outputs: dict[str, list[int]]


# the cluster

class Cluster(BaseModel):
    master: str = Field(description="'ok', or why the master could not be read.")
    nodes: list[dict[str, Any]]
    worker_types: list[str]
    models: dict[str, dict[str, Any]] = Field(description="Your models: status, replicas, requests/s, p50/p99 ms.")


class Health(_Open):
    status: Literal["ok", "degraded"]
