"""The manager's API defined once: the table's rows against their endpoints,
answers serialized from the declared model, and request bodies parsed by the
models of seedserve.api with 4xx errors that name the field. In process,
over httpx's ASGI transport (no database: these endpoints need none)."""

from __future__ import annotations

import asyncio
import typing
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from seedserve import api
from seedserve.errors import SeedserveError
from seedserve.manager_app._json import MAX_JSON_BODY, json_body
from seedserve.manager_app.operations import OPERATIONS, _answering, api_routes, openapi_document
from seedserve.openapi_builder import Operation

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


async def _error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SeedserveError)
    return JSONResponse(exc.to_body(), status_code=400 if exc.code == "invalid_input" else 413)


class _App:
    """One row's route in an app, called in process; the app's exceptions propagate."""

    def __init__(self, op: Operation) -> None:
        self.app = Starlette(routes=[Route(op.path, _answering(op), methods=[op.method.upper()])],
                             exception_handlers={SeedserveError: _error})

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://manager.test") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(send())


def test_every_row_s_endpoint_is_declared_to_return_the_row_s_answer_model() -> None:
    for op in OPERATIONS:
        assert op.endpoint is not None, op.path
        returns = typing.get_type_hints(op.endpoint)["return"]
        assert returns is (op.response if op.response is not None else Response), (op.method, op.path, returns)


def test_the_document_has_exactly_the_table_s_api_operations_and_the_app_routes_them() -> None:
    documented = {(method, path) for path, ops in openapi_document()["paths"].items() if path.startswith("/api")
                  for method in ops}
    assert documented == {(op.method, op.document_path) for op in OPERATIONS}
    routed = {(method.lower(), route.path) for route in api_routes()
              for method in route.methods or () if method != "HEAD"}
    assert routed == {(op.method, op.path) for op in OPERATIONS}
    assert "/api/models/{name}/versions/{version}" in openapi_document()["paths"]


def test_an_answer_of_another_model_than_the_row_declares_is_a_server_error_not_a_wrong_body() -> None:
    async def wrong(request: Request) -> api.Trust:
        return api.Trust(username="ada", trusted=True)

    client = _App(Operation("get", "/x", "wrong", api.Revoked, endpoint=wrong))
    with pytest.raises(TypeError, match="answered Trust, not its declared Revoked"):
        client.request("GET", "/x")


def test_an_answer_is_its_model_as_json_with_the_row_s_status_and_unset_defaults_left_out() -> None:
    async def create(request: Request) -> api.KeyCreated:
        return api.KeyCreated(id="k_1", label="ci", created_at=WHEN, key="sk_x", message="shown once")

    answer = _App(Operation("post", "/k", "create", api.KeyCreated, 201, endpoint=create)).post("/k")
    assert answer.status_code == 201
    assert answer.json() == {"id": "k_1", "label": "ci", "created_at": "2026-01-02T03:04:05+00:00", "key": "sk_x",
                             "message": "shown once"}


def _parsing(model: type[BaseModel], input: str = "body") -> _App:
    async def parse(request: Request) -> Response:
        parsed = await json_body(request, model, input=input)
        return JSONResponse(parsed.model_dump(mode="json"))

    return _App(Operation("post", "/p", "parse", None, endpoint=parse))


def test_a_wrongly_typed_field_is_a_400_naming_the_field_the_value_and_what_it_takes() -> None:
    client = _parsing(api.InviteRequest)
    for body, field in [({"expires_in_s": "3600"}, "expires_in_s"), ({"expires_in_s": True}, "expires_in_s"),
                        ({"expires_in_s": 0}, "expires_in_s"), ({"single_use": 1}, "single_use"),
                        ({"label": ""}, "label"), ({"label": "x" * 65}, "label")]:
        refused = client.post("/p", json=body)
        error = refused.json()["error"]
        assert refused.status_code == 400 and error["code"] == "invalid_input" and error["input"] == field, body
        assert f"field '{field}'" in error["message"] and f"'{field}' takes: " in error["message"], error
        assert "(got " in error["message"] and error["problems"][0]["field"] == field
    assert client.post("/p", json={"expires_in_s": 60}).json() == {"label": "invite", "expires_in_s": 60,
                                                                  "single_use": True}


def test_a_missing_field_and_a_body_that_is_no_json_object_blame_what_the_endpoint_names() -> None:
    client = _parsing(api.PinRequest, input="version")
    missing = client.post("/p", json={}).json()["error"]
    assert missing["input"] == "version" and "Field required" in missing["message"] and "(got" not in missing["message"]
    assert 'Send {"version": N}' in missing["message"]
    for raw in (b"not json", b"[1]", b'"1"'):
        refused = client.post("/p", content=raw)
        assert refused.status_code == 400 and refused.json()["error"]["input"] == "version", raw
    assert client.post("/p", json={"version": None}).json() == {"version": None}


def test_an_oversized_body_is_refused_with_its_limit_before_it_is_parsed() -> None:
    refused = _parsing(api.KeyRequest).post("/p", content=b"{" + b" " * MAX_JSON_BODY + b"}")
    assert refused.status_code == 413
    assert refused.json()["error"] == {"code": "input_too_large", "input": "body", "limit": MAX_JSON_BODY,
                                       "message": f"a JSON body takes at most {MAX_JSON_BODY:,} bytes"}
