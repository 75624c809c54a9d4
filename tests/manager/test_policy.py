"""The sign-up and handler policy over real HTTP against managers on the real
embedded database server: invite codes (made by the admin, consumed once, even
by two sign-ups racing), closed sign-up with the admin still creating
accounts, the sign-up page per policy, and handler packages refused for
untrusted accounts (or for everyone) before their upload is read, with
nothing stored."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from seedserve import api
from seedserve.client import AsyncManagerClient, ManagerClient
from seedserve.client.handler import package_handler
from seedserve.errors import AlreadyExists, Forbidden, SeedserveError
from tests.conftest import MongoServer
from tests.helpers import MLP_MANIFEST, make_mlp, save_torchscript
from tests.manager.conftest import Manager, serve_manager
from tests.manager.test_accounts import Spec, _everything

HANDLER_SCRIPT = """
import torch

def load(weights):
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    model.load_state_dict(weights)
    return model

def predict(model, x):
    return model(torch.from_numpy(x["x"]))
"""


@pytest.fixture(scope="module")
def invite_manager(mongo_server: MongoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    """What a manager listening beyond loopback gets by default."""
    with serve_manager(mongo_server, tmp_path_factory.mktemp("invite"), signup="invite", handlers="trusted") as running:
        yield running


@pytest.fixture(scope="module")
def closed_manager(mongo_server: MongoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    with serve_manager(mongo_server, tmp_path_factory.mktemp("closed"), signup="closed", handlers="none") as running:
        yield running


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("artifacts")
    script = folder / "handler.py"
    script.write_text(HANDLER_SCRIPT)
    return {"torchscript": save_torchscript(make_mlp(), folder / "mlp.pt"),
            "handler": package_handler(script, folder / "mlp.zip", weights=make_mlp())}


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def _password() -> str:
    return "pw-" + secrets.token_urlsafe(12)


def _admin(manager: Manager) -> ManagerClient:
    return ManagerClient(manager.url, manager.token)


def _account(manager: Manager, prefix: str) -> tuple[str, str]:
    """A new account the admin creates (any policy): (username, API token)."""
    username, password = _name(prefix), _password()
    with _admin(manager) as admin:
        admin.signup(username, password)
    with ManagerClient(manager.url) as client:
        return username, client.login(username, password)


def _signup(manager: Manager, **body: Any) -> httpx.Response:
    return httpx.post(manager.url + "/api/users", json={"username": _name("u"), "password": _password(), **body})


def test_invite_codes_are_shown_once_stored_hashed_and_consumed_once(invite_manager: Manager) -> None:
    spec = Spec(invite_manager)
    admin_auth = {"Authorization": f"Bearer {invite_manager.token}"}
    created = spec.check(httpx.post(invite_manager.url + "/api/invites", json={"label": "for ada"},
                                    headers=admin_auth)).json()
    code = created["code"]
    assert created["single_use"] and created["uses"] == 0 and created["expires_at"] is None
    listed = spec.check(httpx.get(invite_manager.url + "/api/invites", headers=admin_auth)).json()["invites"]
    assert [i["label"] for i in listed if i["id"] == created["id"]] == ["for ada"]
    assert code not in httpx.get(invite_manager.url + "/api/invites", headers=admin_auth).text
    assert code not in _everything(invite_manager) and code[-16:] not in _everything(invite_manager)

    missing = spec.check(_signup(invite_manager))
    assert missing.status_code == 403 and missing.json()["error"]["input"] == "invite"
    assert "needs an invite code" in missing.json()["error"]["message"]
    wrong = spec.check(_signup(invite_manager, invite=code[:-2] + "xx"))
    assert wrong.status_code == 403 and "not valid" in wrong.json()["error"]["message"]
    assert "seedserve invites create" in wrong.json()["error"]["message"]

    ada = _name("ada")
    joined = spec.check(httpx.post(invite_manager.url + "/api/users",
                                   json={"username": ada, "password": _password(), "invite": code}))
    assert joined.status_code == 201 and joined.json()["username"] == ada
    again = spec.check(_signup(invite_manager, invite=code))
    assert again.status_code == 403 and "already been used" in again.json()["error"]["message"]
    with _admin(invite_manager) as admin:
        used = next(i for i in admin.invites() if i.id == created["id"])
    assert used.uses == 1 and used.used_by == [ada]


def test_of_two_concurrent_sign_ups_with_one_code_exactly_one_wins(invite_manager: Manager) -> None:
    async def race(code: str, names: list[str]) -> list[Any]:
        async with AsyncManagerClient(invite_manager.url) as one, AsyncManagerClient(invite_manager.url) as two:
            return await asyncio.gather(one.signup(names[0], _password(), invite=code),
                                        two.signup(names[1], _password(), invite=code), return_exceptions=True)

    with _admin(invite_manager) as admin:
        for _ in range(5):
            code = admin.create_invite("race").code
            names = [_name("racer"), _name("racer")]
            outcomes = asyncio.run(race(code, names))
            won = [o for o in outcomes if isinstance(o, api.User)]
            lost = [o for o in outcomes if isinstance(o, Forbidden)]
            assert len(won) == 1 and len(lost) == 1, outcomes
            assert "already been used" in lost[0].message
            stored = {doc["_id"] for doc in invite_manager.db["users"].find({"_id": {"$in": names}})}
            assert stored == {won[0].username}


def test_an_expired_or_revoked_code_is_refused_and_creates_no_account(invite_manager: Manager) -> None:
    with _admin(invite_manager) as admin:
        expiring = admin.create_invite("soon", expires_in_s=3600)
        revoked = admin.create_invite("revoked")
        admin.revoke_invite(revoked.id)
        with pytest.raises(SeedserveError) as gone:
            admin.revoke_invite(revoked.id)
    assert gone.value.code == "not_found"
    # An hour on: the stored invite with its expiry in the past (re-inserted:
    # the embedded server would store a $set date as a string).
    stored = invite_manager.db["invites"].find_one_and_delete({"id": expiring.id})
    invite_manager.db["invites"].insert_one({**stored, "expires_at": datetime.now(UTC) - timedelta(seconds=1)})
    users_before = invite_manager.db["users"].count_documents({})
    expired = _signup(invite_manager, invite=expiring.code)
    assert expired.status_code == 403 and "expired at" in expired.json()["error"]["message"]
    refused = _signup(invite_manager, invite=revoked.code)
    assert refused.status_code == 403 and "not valid" in refused.json()["error"]["message"]
    assert invite_manager.db["users"].count_documents({}) == users_before


def test_a_reusable_code_signs_up_many_and_a_taken_username_gives_the_use_back(invite_manager: Manager) -> None:
    taken, _ = _account(invite_manager, "taken")
    with _admin(invite_manager) as admin:
        reusable = admin.create_invite("team", single_use=False)
        single = admin.create_invite("one")
    for _ in range(2):
        assert _signup(invite_manager, invite=reusable.code).status_code == 201
    clash = httpx.post(invite_manager.url + "/api/users",
                       json={"username": taken, "password": _password(), "invite": single.code})
    assert clash.status_code == 409
    assert _signup(invite_manager, invite=single.code).status_code == 201  # the refused sign-up used nothing


def test_closed_sign_up_is_refused_but_the_admin_creates_accounts(closed_manager: Manager) -> None:
    spec = Spec(closed_manager)
    refused = spec.check(_signup(closed_manager, invite="inv_anything"))
    assert refused.status_code == 403
    message = refused.json()["error"]["message"]
    assert "sign-up is closed" in message and "only the admin creates accounts" in message
    username, password = _name("made"), _password()
    with _admin(closed_manager) as admin:
        assert admin.signup(username, password).username == username
    with ManagerClient(closed_manager.url) as client:
        client.login(username, password)
        assert client.me().username == username
    # an ordinary account's token is not the admin's
    with ManagerClient(closed_manager.url) as client, pytest.raises(Forbidden):
        client.login(username, password)
        client.signup(_name("friend"), _password())


def test_only_the_admin_manages_invites_and_trust(invite_manager: Manager) -> None:
    spec = Spec(invite_manager)
    username, token = _account(invite_manager, "plain")
    auth = {"Authorization": f"Bearer {token}"}
    before = _everything(invite_manager)
    for method, path, body in [("post", "/api/invites", {}), ("get", "/api/invites", None),
                               ("delete", "/api/invites/i_123", None),
                               ("put", f"/api/users/{username}/trusted", {"trusted": True})]:
        response = spec.check(httpx.request(method, invite_manager.url + path, json=body, headers=auth))
        assert response.status_code == 403, (method, path, response.text)
        assert "admin token" in response.json()["error"]["message"]
    assert _everything(invite_manager) == before
    with _admin(invite_manager) as admin, pytest.raises(SeedserveError) as unknown:
        admin.set_trusted("nobody-" + secrets.token_hex(3))
    assert unknown.value.code == "not_found"
    bad = spec.check(httpx.put(f"{invite_manager.url}/api/users/{username}/trusted", json={"trusted": "yes"},
                               headers={"Authorization": f"Bearer {invite_manager.token}"}))
    assert bad.status_code == 400 and bad.json()["error"]["input"] == "trusted"
    nobody_can_be_admin = spec.check(_signup(invite_manager, username="admin"))
    assert nobody_can_be_admin.status_code == 409 and "reserved" in nobody_can_be_admin.json()["error"]["message"]


def _csrf(page: httpx.Response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def test_the_sign_up_page_asks_for_an_invite_or_says_sign_up_is_closed(
    manager: Manager, invite_manager: Manager, closed_manager: Manager,
) -> None:
    assert 'name="invite"' not in httpx.get(manager.url + "/signup").text
    with httpx.Client(base_url=closed_manager.url) as browser:
        page = browser.get("/signup")
        assert "Sign-up is closed" in page.text and 'name="password"' not in page.text
        posted = browser.post("/signup", data={"username": _name("x"), "password": _password(),
                                               "csrf_token": _csrf(browser.get("/login"))})
        assert posted.status_code == 403 and "only the admin creates accounts" in posted.text
    with _admin(invite_manager) as admin:
        code = admin.create_invite("page").code
    with httpx.Client(base_url=invite_manager.url) as browser:
        page = browser.get("/signup")
        assert 'name="invite"' in page.text and "by invitation" in page.text
        username, password = _name("page"), _password()
        wrong = browser.post("/signup", data={"username": username, "password": password, "invite": "inv_nope",
                                              "csrf_token": _csrf(page)})
        assert wrong.status_code == 403 and "not valid" in wrong.text and 'name="invite"' in wrong.text
        joined = browser.post("/signup", data={"username": username, "password": password, "invite": code,
                                               "csrf_token": _csrf(page)})
        assert joined.status_code == 303
        assert browser.get("/api/me").json()["username"] == username


def _register(manager: Manager, token: str, artifact: Path, name: str) -> api.Registered:
    with ManagerClient(manager.url, token) as client:
        return client.register_model(artifact, {**MLP_MANIFEST, "name": name})


def test_handler_packages_need_a_trusted_account_and_a_refusal_stores_nothing(
    invite_manager: Manager, artifacts: dict[str, Path],
) -> None:
    username, token = _account(invite_manager, "handlers")
    before = _everything(invite_manager)
    for operation in ("register_model", "profile"):
        with ManagerClient(invite_manager.url, token) as client, pytest.raises(Forbidden) as refused:
            getattr(client, operation)(artifacts["handler"], {**MLP_MANIFEST, "name": _name("h")})
        assert "need a trusted account" in refused.value.message and "torch.export" in refused.value.message
        assert refused.value.input == "format"
    assert _everything(invite_manager) == before
    # TorchScript from the same untrusted account is accepted
    assert _register(invite_manager, token, artifacts["torchscript"], _name("ts")).version == 1
    with _admin(invite_manager) as admin:
        admin.set_trusted(username)
        assert _register(invite_manager, invite_manager.token, artifacts["handler"], _name("adm")).version == 1
    assert invite_manager.db["users"].find_one({"_id": username})["trusted"]  # the embedded server's $set bool is 1
    trusted_name = _name("trusted")
    assert (_register(invite_manager, token, artifacts["handler"], trusted_name).key or "").startswith("sk_")
    with _admin(invite_manager) as admin:
        admin.set_trusted(username, False)
    with pytest.raises(Forbidden):
        _register(invite_manager, token, artifacts["handler"], trusted_name)  # not even a new version
    with ManagerClient(invite_manager.url, token) as client:
        assert [v.version for v in client.versions(trusted_name)] == [1]


def test_with_handlers_none_nobody_registers_a_handler_not_even_the_admin(
    closed_manager: Manager, artifacts: dict[str, Path],
) -> None:
    before = _everything(closed_manager)
    with pytest.raises(Forbidden) as refused:
        _register(closed_manager, closed_manager.token, artifacts["handler"], _name("none"))
    assert "accepts no handler packages" in refused.value.message and "TorchScript" in refused.value.message
    assert _everything(closed_manager) == before
    assert _register(closed_manager, closed_manager.token, artifacts["torchscript"], _name("ts")).version == 1


def test_a_handler_upload_is_refused_before_its_file_is_read(invite_manager: Manager) -> None:
    """The form's format field arrives, then the first bytes of a large
    artifact, and the client stops sending: the 403 comes without the rest."""
    _, token = _account(invite_manager, "early")
    boundary = "policyboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n"
            f'{{"name": "early", "inputs": [], "outputs": []}}\r\n'
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"format\"\r\n\r\nhandler\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"artifact\"; filename=\"big.zip\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + b"PK" * 1000
    declared = len(head) + 200_000  # under the size limit: only the policy can refuse it
    port = int(invite_manager.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall((f"POST /api/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                      f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                      f"Content-Length: {declared}\r\n\r\n").encode() + head)
        answer = b""
        while b"\r\n\r\n" not in answer or b"}}" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 403"), answer[:300]
    assert b"need a trusted account" in answer


def test_open_sign_up_and_all_handlers_on_loopback(manager: Manager, artifacts: dict[str, Path]) -> None:
    assert _signup(manager).status_code == 201
    username, password = _name("loop"), _password()
    with ManagerClient(manager.url) as client:
        client.signup(username, password)
        token = client.login(username, password)
    assert _register(manager, token, artifacts["handler"], _name("loop")).version == 1
    with ManagerClient(manager.url) as client, pytest.raises(AlreadyExists, match="reserved"):
        client.signup("admin", password)


def test_the_cli_makes_lists_and_revokes_invites_and_trusts_accounts(
    invite_manager: Manager, artifacts: dict[str, Path], tmp_path: Path,
) -> None:
    from tests.manager.test_cli import Cli

    admin = Cli(tmp_path / "admin")
    target = ["--url", invite_manager.url, "--token", invite_manager.token]
    made = admin("invites", "create", *target, "--label", "for grace", "--expires-in", "7d").stdout
    assert made.startswith("invite i_") and "single use" in made and "shown only once: inv_" in made
    invite_id, code = made.split()[1], made.split()[-1]
    listed = admin("invites", "list", *target).stdout
    assert invite_id in listed and "for grace" in listed and code not in listed

    grace, password = _name("grace"), _password()
    user = Cli(tmp_path / "grace")
    refused = user("login", "--url", invite_manager.url, "--signup", "--username", grace, "--password", password,
                   ok=False)
    assert refused.returncode == 1 and "needs an invite code" in refused.stderr
    user("login", "--url", invite_manager.url, "--signup", "--invite", code, "--username", grace,
         "--password", password)
    assert grace in admin("invites", "list", *target).stdout

    # grace may not manage invites; the admin trusts her, then she registers a handler package
    assert "admin token" in user("invites", "list", ok=False).stderr
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({**MLP_MANIFEST, "name": _name("grace")}))
    untrusted = user("register", str(artifacts["handler"]), "--manifest", str(manifest), ok=False)
    assert untrusted.returncode == 1 and "need a trusted account" in untrusted.stderr
    assert f"{grace} is trusted" in admin("users", "trust", grace, *target).stdout
    assert "version 1 registered" in user("register", str(artifacts["handler"]), "--manifest", str(manifest)).stdout
    assert "no longer trusted" in admin("users", "untrust", grace, *target).stdout
    assert "not_found" in admin("users", "trust", "nobody-" + secrets.token_hex(3), *target, ok=False).stderr

    assert f"revoked {invite_id}" in admin("invites", "revoke", invite_id, *target).stdout
    assert admin("invites", "revoke", invite_id, *target, ok=False).returncode == 1
    bad = admin("invites", "create", *target, "--expires-in", "soon", ok=False)
    assert bad.returncode == 2 and "use e.g. 90s, 30m, 12h or 7d" in bad.stderr
    assert admin("login", "--url", invite_manager.url, "--invite", "x", "--username", "a", "--password", "b",
                 ok=False).returncode == 2
