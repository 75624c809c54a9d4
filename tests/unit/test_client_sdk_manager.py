"""ManagerClient and AsyncManagerClient answer with the models of
seedserve.api, read from the manager's JSON; over httpx's MockTransport (the
transport is swapped; nothing of ours is patched)."""

from __future__ import annotations

import asyncio
import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from seedserve import api
from seedserve.client import AsyncManagerClient, ManagerClient
from seedserve.errors import NotFound

URL = "http://manager.test"
KEY = {"id": "k1", "label": "default", "created_at": "2026-01-02T03:04:05+00:00"}
MODEL = {"name": "mlp", "version": 2, "latest": 2, "pinned": None, "manifest": {"name": "mlp"},
         "artifact": {"format": "export", "size": 10, "sha256": "ab"}, "versions": [1, 2], "keys": [KEY],
         "created_at": "2026-01-02T03:04:05+00:00", "endpoints": {"predict": "/models/mlp/predict"}}
INSIGHT = {"profile": {"parameters": 5}, "predictions": [], "recommendation": None, "measured": {}}
REGISTERED = {"name": "mlp", "version": 1, "outputs": {"y": [1, 4]}, **INSIGHT, "key": "sk_new", "key_id": "k1",
              "message": "store this key now"}


def _answering(routes: dict[tuple[str, str], httpx.Response]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        return routes.get((request.method, request.url.path), httpx.Response(404, json={
            "error": {"code": "not_found", "message": f"no {request.url.path}"}}))

    return httpx.MockTransport(handle)


def test_answers_are_the_api_models_with_their_timestamps_as_datetimes() -> None:
    transport = _answering({
        ("GET", "/api/models/mlp"): httpx.Response(200, json={**MODEL, **INSIGHT}),
        ("GET", "/api/models"): httpx.Response(200, json={"models": [MODEL]}),
        ("PUT", "/api/models/mlp/pin"): httpx.Response(200, json={"name": "mlp", "version": 1, "pinned": 1,
                                                                  "latest": 2}),
    })
    with ManagerClient(URL, "st_x", http_transport=transport) as client:
        shown = client.get_model("mlp")
        listed = client.list_models()
        pinned = client.pin("mlp", 1)
        with pytest.raises(NotFound, match="no /api/models/gone"):
            client.get_model("gone")
    assert isinstance(shown, api.ModelDetail) and shown.profile == {"parameters": 5}
    assert shown.keys == [api.Key(id="k1", label="default", created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))]
    assert [type(m) for m in listed] == [api.Model] and listed[0].artifact == api.Artifact(format="export", size=10,
                                                                                           sha256="ab")
    assert pinned == api.Pinned(name="mlp", version=1, pinned=1, latest=2)
    assert listed[0].model_dump(mode="json") == MODEL  # read back, it is the wire's JSON again


def test_a_registration_answers_its_key_or_the_whole_answer_and_its_warnings_point_at_the_caller(
    tmp_path: Path,
) -> None:
    artifact = tmp_path / "m.pt"
    artifact.write_bytes(b"x" * 10)
    sent: list[httpx.Request] = []
    deprecated = {**REGISTERED, "warnings": ["TorchScript is deprecated; use save_program"]}

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(201, json=deprecated)

    with ManagerClient(URL, "st_x", http_transport=httpx.MockTransport(handle)) as client:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            key = client.register(artifact, {"name": "mlp"})
        whole = client.register_model(artifact, {"name": "mlp"}, format="export")
    assert key == "sk_new" and isinstance(whole, api.Registered) and whole.warnings == deprecated["warnings"]
    assert [(w.category, w.filename) for w in caught] == [(FutureWarning, __file__)]
    body = sent[-1].read()
    assert b'name="format"\r\n\r\nexport' in body and json.dumps({"name": "mlp"}).encode() in body


def test_the_async_client_answers_with_the_same_models(tmp_path: Path) -> None:
    artifact = tmp_path / "m.pt"
    artifact.write_bytes(b"x")
    transport = _answering({
        ("POST", "/api/models"): httpx.Response(201, json={**REGISTERED, "key": None, "warnings": ["deprecated"]}),
        ("GET", "/api/models/mlp/keys"): httpx.Response(200, json={"keys": [KEY]}),
        ("POST", "/api/tokens"): httpx.Response(201, json={**KEY, "id": "t1", "token": "st_new", "message": "m"}),
        ("GET", "/api/me"): httpx.Response(200, json={"username": "ada", "via": "token", "models": ["mlp"]}),
    })

    async def scenario() -> tuple[list[api.Key], str, api.Me]:
        async with AsyncManagerClient(URL, http_transport=transport) as client:
            token = await client.login("ada", "correct horse")
            assert await client.register(artifact, {"name": "mlp"}) is None  # a new version: no key
            return await client.keys("mlp"), token, await client.me()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keys, token, me = asyncio.run(scenario())
    assert [(w.category, w.filename) for w in caught] == [(FutureWarning, __file__)]
    assert [k.id for k in keys] == ["k1"] and token == "st_new" and me == api.Me(username="ada", via="token",
                                                                               models=["mlp"])
