"""The manager's API, one table: each row is an ``/api`` operation with its
endpoint, its request and answer models (from :mod:`seedserve.api`) and its
error statuses. The app's ``/api`` routes and the OpenAPI 3.1 document both
come from it; an endpoint returns its row's answer model, which is turned
into JSON here, once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from seedserve import __version__, api, openapi_builder
from seedserve.manager_app import accounts, admin, keys, live, models, profiles
from seedserve.openapi_builder import Operation, content

__all__ = ["OPERATIONS", "allowed_methods", "api_routes", "openapi_document"]


_UPLOAD = content(api.RegistrationForm, "multipart/form-data")

_QUERY = {
    "application/json": {"schema": {"type": "object", "description": "The query: input name -> value."}},
    "multipart/form-data": {"schema": {"type": "object", "description": "One part per input."}},
}


OPERATIONS: list[Operation] = [
    Operation("post", "/api/users", "Sign up (as SEEDSERVE_SIGNUP allows), or create an account as the admin",
              api.User, 201, api.SignUp, (400, 401, 403, 409, 413), auth=False, tags=("accounts",),
              endpoint=accounts.create_user),
    Operation("post", "/api/invites", "Create an invite code (admin; shown once)", api.InviteCreated, 201,
              api.InviteRequest, (400, 401, 403, 413), tags=("admin",), body_required=False,
              endpoint=admin.create_invite),
    Operation("get", "/api/invites", "List invite codes (admin; codes are never shown again)", api.InviteList,
              tags=("admin",), endpoint=admin.list_invites),
    Operation("delete", "/api/invites/{invite_id}", "Revoke an invite code (admin)", api.Revoked, tags=("admin",),
              endpoint=admin.revoke_invite),
    Operation("put", "/api/users/{username}/trusted", "Trust an account with handler packages, or stop (admin)",
              api.Trust, body=api.TrustRequest, errors=(400, 401, 403, 404, 413), tags=("admin",),
              endpoint=admin.set_trusted),
    Operation("get", "/api/me", "Who you are and your models", api.Me, tags=("accounts",), endpoint=accounts.me),
    Operation("post", "/api/tokens", "Create an API token (signed in, or with username and password)", api.TokenCreated,
              201, api.TokenRequest, (400, 401, 403, 413, 429), auth=False, tags=("accounts",), body_required=False,
              endpoint=accounts.create_token),
    Operation("get", "/api/tokens", "List your API tokens", api.TokenList, tags=("accounts",),
              endpoint=accounts.list_tokens),
    Operation("delete", "/api/tokens/{token_id}", "Revoke an API token", api.Revoked, tags=("accounts",),
              endpoint=accounts.revoke_token),
    Operation("post", "/api/models", "Register a model, or the next version of one", api.Registered, 201, _UPLOAD,
              (400, 401, 403, 409, 413, 422), endpoint=models.register),
    Operation("get", "/api/models", "List your models", api.ModelList, endpoint=models.list_models),
    Operation("get", "/api/models/{name}", "A model: profile, predicted latency, recommendation", api.ModelDetail,
              endpoint=models.get_model),
    Operation("delete", "/api/models/{name}", "Delete a model, its versions and artifacts", api.Deleted,
              endpoint=models.delete_model),
    Operation("get", "/api/models/{name}/versions", "List a model's versions", api.VersionList,
              endpoint=models.list_versions),
    Operation("get", "/api/models/{name}/versions/{version:int}", "One version", api.Version,
              endpoint=models.get_version),
    Operation("put", "/api/models/{name}/pin", "Serve a version at the model's endpoint (roll back)", api.Pinned,
              body=api.PinRequest, errors=(400, 401, 403, 404, 413), endpoint=models.pin_version),
    Operation("get", "/api/models/{name}/keys", "List a model's keys", api.KeyList, tags=("keys",),
              endpoint=keys.list_keys),
    Operation("post", "/api/models/{name}/keys", "Create a key (shown once)", api.KeyCreated, 201, api.KeyRequest,
              (400, 401, 403, 404, 409, 413), tags=("keys",), body_required=False, endpoint=keys.create_key),
    Operation("post", "/api/models/{name}/keys/{key_id}/rotate", "Rotate a key: new secret, old one revoked",
              api.KeyCreated, 201, tags=("keys",), endpoint=keys.rotate_key),
    Operation("delete", "/api/models/{name}/keys/{key_id}", "Revoke a key", api.Revoked, tags=("keys",),
              endpoint=keys.revoke_key),
    Operation("post", "/api/models/{name}/try", "Send a query through the manager (the dashboard's 'try it')",
              None, body=_QUERY, errors=(400, 401, 403, 404, 413, 503),
              headers=(("X-Model-Key", "One of the model's keys, sent on to the master."),),
              endpoint=live.try_model),
    Operation("post", "/api/profile", "Profile an artifact without registering it", api.Profiled, body=_UPLOAD,
              errors=(400, 401, 403, 413, 422), endpoint=profiles.profile_artifact),
    Operation("get", "/api/cluster", "Nodes, worker types, and your models' replicas and live numbers", api.Cluster,
              tags=("cluster",), endpoint=live.get_cluster),
]


def _answering(op: Operation) -> Callable[[Request], Awaitable[Response]]:
    """``op``'s endpoint as a Starlette endpoint: its answer, which must be of
    the row's model, as JSON with the row's status. Fields an endpoint left
    at their defaults stay out, as they always have (``replaces`` on a new
    key, ``warnings`` on a registration that has none)."""
    endpoint, declared = op.endpoint, op.response
    assert endpoint is not None, f"{op.method} {op.path} has no endpoint"

    async def answer(request: Request) -> Response:
        answered = await endpoint(request)
        if isinstance(answered, Response) and declared is None:
            return answered
        if isinstance(answered, Response) or type(answered) is not declared:
            raise TypeError(f"{op.method.upper()} {op.path} answered {type(answered).__name__}, not its "
                            f"declared {getattr(declared, '__name__', declared)}")
        return JSONResponse(answered.model_dump(mode="json", exclude_unset=True), status_code=op.status)

    answer.__name__ = answer.__qualname__ = getattr(endpoint, "__name__", "answer")
    return answer


def api_routes() -> list[Route]:
    """The app's ``/api`` routes: one per row of :data:`OPERATIONS`."""
    return [Route(op.path, _answering(op), methods=[op.method.upper()]) for op in OPERATIONS]


_PARAMS: dict[str, dict[str, Any]] = {
    "name": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_-]{0,62}$"},
    "version": {"type": "integer", "minimum": 0},
    "key_id": {"type": "string"},
    "token_id": {"type": "string"},
    "invite_id": {"type": "string"},
    "username": {"type": "string"},
}


def _schemas() -> list[type[BaseModel]]:
    """Every model the table's operations take or answer (what they nest comes with them), and /healthz's."""
    models = [m for op in OPERATIONS for m in (op.body, op.response) if isinstance(m, type)]
    return list(dict.fromkeys([*models, api.RegistrationForm, api.Health]))


def allowed_methods(path: str) -> list[str] | None:
    """The methods the document gives ``path``: the ``Allow`` header of a 405."""
    return openapi_builder.allowed_methods(openapi_document(), path)


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the manager's API."""
    document = openapi_builder.build_document(
        info={
            "title": "seedserve manager",
            "version": __version__,
            "description": "Register PyTorch models, manage their versions and keys, read their profiles. "
            "Authenticate with 'Authorization: Bearer <API token>' (POST /api/tokens), or a dashboard session "
            "cookie plus the X-CSRF-Token header on requests that change something. Errors are "
            '{"error": {"code", "message", "input"}}.',
        },
        operations=OPERATIONS,
        schemas=_schemas(),
        params=_PARAMS,
        security={
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "seedserve_session"},
        },
        public_security=[{}, {"bearer": []}, {"session": []}],
    )
    document["paths"]["/healthz"] = {"get": {
        "operationId": "get_healthz", "summary": "Readiness: manager, database and master health", "tags": ["health"],
        "security": [{}], "responses": {"200": {"description": "Health", "content": content(api.Health)},
                                        "503": {"description": "A component is down; 'down' names it",
                                                "content": content(api.Health)}}}}
    document["paths"]["/livez"] = {"get": {
        "operationId": "get_livez", "summary": "Liveness: 200 while the manager answers", "tags": ["health"],
        "security": [{}], "responses": {"200": {"description": "Live", "content": {"application/json": {
            "schema": {"type": "object", "properties": {"live": {"type": "boolean"}}, "required": ["live"]}}}}}}}
    return document
