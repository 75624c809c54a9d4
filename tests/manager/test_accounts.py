"""Accounts, tokens, sessions, per-model keys and tenant isolation, over real
HTTP against the manager on the real embedded database server. Every JSON
answer here is also checked against the manager's OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec

from seedserve.client import AsyncManagerClient, ManagerClient
from seedserve.errors import AlreadyExists, InvalidArtifact, NotFound, Unauthenticated
from seedserve.manager_app.operations import OPERATIONS
from tests.helpers import MLP_MANIFEST, make_mlp, save_torchscript
from tests.manager.conftest import Manager


def _spec(manager: Manager) -> dict[str, Any]:
    return httpx.get(manager.url + "/openapi.json").raise_for_status().json()


class Spec:
    """Checks answers against the OpenAPI document the manager serves."""

    def __init__(self, manager: Manager) -> None:
        self.doc = _spec(manager)
        self.patterns = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path) for path in self.doc["paths"]
        ]

    def check(self, response: httpx.Response) -> httpx.Response:
        path = response.request.url.path
        template = next(t for pattern, t in self.patterns if pattern.match(path))
        operation = self.doc["paths"][template][response.request.method.lower()]
        documented = operation["responses"].get(str(response.status_code))
        assert documented is not None, (f"{response.request.method} {template} answered undocumented "
                                        f"{response.status_code}")
        schema = documented["content"]["application/json"]["schema"]
        OAS31Validator({**schema, "components": self.doc["components"]}).validate(response.json())
        return response


@pytest.fixture(scope="module")
def spec(manager: Manager) -> Spec:
    return Spec(manager)


def _user(manager: Manager, prefix: str) -> tuple[str, str, str]:
    """A new account: (username, password, API token)."""
    username, password = f"{prefix}-{secrets.token_hex(3)}", "pw-" + secrets.token_urlsafe(12)
    with ManagerClient(manager.url) as client:
        client.signup(username, password)
        token = client.login(username, password)
    return username, password, token


@pytest.fixture(scope="module")
def alice(manager: Manager) -> tuple[str, str, str]:
    return _user(manager, "alice")


@pytest.fixture(scope="module")
def bob(manager: Manager) -> tuple[str, str, str]:
    return _user(manager, "bob")


@pytest.fixture(scope="module")
def alices_model(
    manager: Manager, alice: tuple[str, str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A model of Alice's with two versions and a second key."""
    artifact = save_torchscript(make_mlp(), tmp_path_factory.mktemp("alice") / "m.pt")
    name = f"alice-model-{secrets.token_hex(3)}"
    with ManagerClient(manager.url, alice[2]) as client:
        first = client.register_model(artifact, {**MLP_MANIFEST, "name": name})
        client.register(artifact, {**MLP_MANIFEST, "name": name})
        second = client.create_key(name, "ci")
    return {"name": name, "keys": [first.key, second.key], "key_ids": [first.key_id, second.id],
            "artifact": artifact}


def _everything(manager: Manager) -> str:
    """Every document of every collection, GridFS included, as text."""
    from bson import json_util

    ours = {"artifacts_files": "artifacts.files", "artifacts_chunks": "artifacts.chunks"}
    names = [ours.get(n, n) for n in manager.db.list_collection_names()]
    return "".join(json_util.dumps(list(manager.db[name].find())) for name in names)


def test_the_app_s_api_routes_and_the_served_document_are_the_one_table(manager: Manager) -> None:
    from seedserve.manager_app import create_app
    from seedserve.settings import Settings

    doc = _spec(manager)
    validate_spec(doc)
    app = create_app(Settings(mongo_uri="mongodb://127.0.0.1:1"), "unused")
    # Every /api route of the whole app (dashboard included) is a row of the table, and every row is routed.
    routes = {(method.lower(), route.path)
              for route in app.routes if getattr(route, "path", "").startswith("/api")
              for method in (route.methods or ()) if method != "HEAD"}
    assert routes == {(op.method, op.path) for op in OPERATIONS}
    served = {(method, path) for path, ops in doc["paths"].items() if path.startswith("/api") for method in ops}
    assert served == {(op.method, op.document_path) for op in OPERATIONS}
    page = httpx.get(manager.url + "/docs")
    assert page.status_code == 200 and all(op.document_path in page.text for op in OPERATIONS)


def test_sign_up_tokens_and_me(manager: Manager, spec: Spec) -> None:
    username, password, token = _user(manager, "carol")
    auth = {"Authorization": f"Bearer {token}"}
    me = spec.check(httpx.get(manager.url + "/api/me", headers=auth))
    assert me.json() == {"username": username, "via": "token", "models": []}
    created = spec.check(httpx.post(manager.url + "/api/tokens", json={"label": "second"}, headers=auth))
    second = created.json()
    listed = spec.check(httpx.get(manager.url + "/api/tokens", headers=auth)).json()["tokens"]
    assert {t["label"] for t in listed} >= {"sdk", "second"} and all("token" not in t for t in listed)
    spec.check(httpx.delete(f"{manager.url}/api/tokens/{second['id']}", headers=auth))
    refused = spec.check(httpx.get(manager.url + "/api/me", headers={"Authorization": f"Bearer {second['token']}"}))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthenticated"
    taken = spec.check(httpx.post(manager.url + "/api/users", json={"username": username, "password": "x" * 12}))
    assert taken.status_code == 409 and taken.json()["error"]["input"] == "username"
    bad = spec.check(httpx.post(manager.url + "/api/users", json={"username": "A!", "password": "x" * 12}))
    assert bad.status_code == 400 and bad.json()["error"]["input"] == "username"
    short = spec.check(httpx.post(manager.url + "/api/users", json={"username": "shorty", "password": "x"}))
    assert short.status_code == 400 and short.json()["error"]["input"] == "password"
    wrong = spec.check(httpx.post(manager.url + "/api/tokens",
                                  json={"username": username, "password": "wrong-password"}))
    assert wrong.status_code == 401
    assert spec.check(httpx.get(manager.url + "/api/models")).status_code == 401


def test_failed_sign_ins_are_rate_limited(manager: Manager, spec: Spec) -> None:
    username, password, _ = _user(manager, "dave")
    statuses = [httpx.post(manager.url + "/api/tokens",
                           json={"username": username, "password": f"guess-{i:04d}"}).status_code
                for i in range(10)]
    assert statuses == [401] * 10
    limited = spec.check(httpx.post(manager.url + "/api/tokens", json={"username": username, "password": password}))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limited"


def test_keys_are_created_rotated_and_revoked(manager: Manager, alice: tuple[str, str, str],
                                              alices_model: dict[str, Any], spec: Spec) -> None:
    name, auth = alices_model["name"], {"Authorization": f"Bearer {alice[2]}"}
    base = f"{manager.url}/api/models/{name}/keys"
    created = spec.check(httpx.post(base, json={"label": "rotating"}, headers=auth)).json()
    rotated = spec.check(httpx.post(f"{base}/{created['id']}/rotate", headers=auth)).json()
    assert rotated["replaces"] == created["id"] and rotated["label"] == "rotating" and rotated["key"] != created["key"]
    listed = {k["id"] for k in spec.check(httpx.get(base, headers=auth)).json()["keys"]}
    assert rotated["id"] in listed and created["id"] not in listed
    spec.check(httpx.delete(f"{base}/{rotated['id']}", headers=auth))
    assert rotated["id"] not in {k["id"] for k in httpx.get(base, headers=auth).json()["keys"]}
    again = spec.check(httpx.delete(f"{base}/{rotated['id']}", headers=auth))
    assert again.status_code == 404 and again.json()["error"]["input"] == "key_id"
    # the database holds hashes only
    stored = _everything(manager)
    for secret in (created["key"], rotated["key"], *alices_model["keys"]):
        assert secret not in stored


def test_another_user_gets_404_for_every_operation_on_a_model_they_do_not_own(
    manager: Manager, alice: tuple[str, str, str], bob: tuple[str, str, str], alices_model: dict[str, Any], spec: Spec,
) -> None:
    name = alices_model["name"]
    before = _everything(manager)
    values = {"name": name, "version": "1", "key_id": alices_model["key_ids"][0]}
    bob_auth = {"Authorization": f"Bearer {bob[2]}"}
    tried = 0
    for op in OPERATIONS:
        if "{name}" not in op.path:
            continue
        path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], op.document_path)
        kwargs: dict[str, Any] = {}
        if op.method in ("post", "put"):
            kwargs = {"json": {"version": 1, "label": "x"}}
        response = spec.check(httpx.request(op.method, manager.url + path, headers=bob_auth, **kwargs))
        assert response.status_code == 404, f"{op.method} {path}: {response.status_code} {response.text}"
        assert name in response.json()["error"]["message"]
        tried += 1
    assert tried >= 10
    # Bob's own listings do not show it; his registration of the name is refused; his revoking Alice's token fails.
    assert name not in httpx.get(manager.url + "/api/models", headers=bob_auth).text
    alice_tokens = httpx.get(manager.url + "/api/tokens",
                             headers={"Authorization": f"Bearer {alice[2]}"}).json()["tokens"]
    gone = spec.check(httpx.delete(f"{manager.url}/api/tokens/{alice_tokens[0]['id']}", headers=bob_auth))
    assert gone.status_code == 404
    with ManagerClient(manager.url, bob[2]) as client, pytest.raises(AlreadyExists):
        client.register(alices_model["artifact"], {**MLP_MANIFEST, "name": name})
    # Nothing Bob did changed anything (the artifact he uploaded for the refused name is gone again).
    assert _everything(manager).count(name) == before.count(name)
    with ManagerClient(manager.url, alice[2]) as client:
        assert [v.version for v in client.versions(name)] == [1, 2]
        assert len(client.keys(name)) >= 2


def test_no_collection_holds_a_plaintext_password_key_token_or_session(
    manager: Manager, alice: tuple[str, str, str], alices_model: dict[str, Any],
) -> None:
    with httpx.Client(base_url=manager.url) as browser:
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text).group(1)  # type: ignore[union-attr]
        browser.post("/login", data={"username": alice[0], "password": alice[1], "csrf_token": csrf})
        session = browser.cookies["seedserve_session"]
    stored = _everything(manager)
    for secret in (alice[1], alice[2], session, *alices_model["keys"]):
        assert secret not in stored
        assert secret[-16:] not in stored
    assert "$argon2id$" in stored  # the password is there, hashed


def test_sessions_rotate_at_sign_in_and_forms_need_the_csrf_token(
    manager: Manager, alice: tuple[str, str, str]
) -> None:
    with httpx.Client(base_url=manager.url) as browser:
        page = browser.get("/login")
        before = browser.cookies["seedserve_session"]
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        missing = browser.post("/login", data={"username": alice[0], "password": alice[1]})
        assert missing.status_code == 403 and "CSRF" in missing.text
        wrong = browser.post("/login", data={"username": alice[0], "password": alice[1], "csrf_token": csrf[::-1]})
        assert wrong.status_code == 403
        signed_in = browser.post("/login", data={"username": alice[0], "password": alice[1], "csrf_token": csrf})
        assert signed_in.status_code == 303
        after = browser.cookies["seedserve_session"]
        assert after != before
        cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        # the API with the session cookie: reads work, writes need the page's CSRF token
        assert browser.get("/api/me").json()["via"] == "session"
        refused = browser.post("/api/tokens", json={"label": "x"})
        assert refused.status_code == 403 and refused.json()["error"]["input"] == "csrf_token"
        page = browser.get("/dashboard")
        assert page.status_code == 200
        token = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert browser.post("/api/tokens", json={"label": "x"}, headers={"X-CSRF-Token": token}).status_code == 201
    # the id from before sign-in is dead
    with httpx.Client(base_url=manager.url, cookies={"seedserve_session": before}) as attacker:
        assert attacker.get("/api/me").status_code == 401
        assert attacker.get("/dashboard").status_code == 303


def test_a_failing_artifact_leaves_no_document_and_no_gridfs_file(manager: Manager, bob: tuple[str, str, str],
                                                                   tmp_path: Path) -> None:
    before = _everything(manager)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 not really a TorchScript archive")
    name = f"broken-{secrets.token_hex(3)}"
    with ManagerClient(manager.url, bob[2]) as client:
        with pytest.raises(InvalidArtifact) as refused:
            client.register(broken, {**MLP_MANIFEST, "name": name})
        assert refused.value.input == "artifact"
        with pytest.raises(NotFound):
            client.get_model(name)
    assert _everything(manager) == before


def test_the_async_client_covers_the_same_operations(manager: Manager, tmp_path: Path) -> None:
    artifact = save_torchscript(make_mlp(), tmp_path / "m.pt")
    username, password = f"erin-{secrets.token_hex(3)}", "pw-" + secrets.token_urlsafe(12)
    name = f"erin-model-{secrets.token_hex(3)}"

    async def scenario() -> None:
        async with AsyncManagerClient(manager.url) as client:
            await client.signup(username, password)
            await client.login(username, password)
            assert (await client.me()).username == username
            sent: list[int] = []
            key = await client.register(artifact, {**MLP_MANIFEST, "name": name}, progress=lambda s, t: sent.append(s))
            assert key is not None and key.startswith("sk_") and sent and sent[-1] == artifact.stat().st_size
            assert [m.name for m in await client.list_models()] == [name]
            profile = (await client.get_model(name)).profile
            assert profile is not None and profile["parameters"] > 0
            created = await client.create_key(name, "async")
            await client.revoke_key(name, created.id)
            assert [k.label for k in await client.keys(name)] == ["default"]
            assert (await client.cluster()).models[name]["status"] == "NOT_DEPLOYED"
            await client.delete_model(name)
            try:
                await client.get_model(name)
            except NotFound:
                return
            raise AssertionError("the model is still there")

    asyncio.run(scenario())
    with ManagerClient(manager.url, "st_not-a-token") as client, pytest.raises(Unauthenticated):
        client.list_models()


def test_bodies_that_are_not_what_an_operation_takes_get_4xx_json(manager: Manager, alice: tuple[str, str, str],
                                                                  spec: Spec) -> None:
    auth = {"Authorization": f"Bearer {alice[2]}"}
    cases = [
        ("post", "/api/users", b"[1, 2]"),
        ("post", "/api/users", b"{not json"),
        ("post", "/api/users", json.dumps({"username": 5, "password": None}).encode()),
        ("post", "/api/tokens", json.dumps({"label": ""}).encode()),
        ("post", "/api/tokens", b"\xff\xfe"),
        ("post", "/api/users", b"{" * 100_000),
    ]
    for method, path, body in cases:
        response = spec.check(httpx.request(method, manager.url + path, content=body, headers=auth))
        assert 400 <= response.status_code < 500, (path, body[:20], response.status_code)
    big = httpx.post(manager.url + "/api/users", content=b" " * (70 * 1024), headers=auth)
    assert big.status_code == 413
