"""Attacks on the keys, against the whole system.

Secrets never land in plain text anywhere the system writes: a password,
an API token, a dashboard session id and model keys, each used for real (sign
up, sign in on the form, register, query, a wrong key, key rotation), are then
searched for, byte for byte, in every file of the system's data directory
(the database file and its WAL, every component's log) and in every log of
the Ray session (Serve controller, proxy, HAProxy, replicas, workers).

Guessing keys gets 429 after a limit, while the model's own key keeps working."""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from seedserve.client import Client, ManagerClient
from seedserve.ratelimit import WRONG_KEYS_PER_MINUTE
from tests.conftest import System
from tests.helpers import MLP_MANIFEST, eventually, make_mlp, save_torchscript

pytestmark = pytest.mark.integration

RAY_SESSION = Path("/tmp/ray/session_latest")


def _files_holding(roots: list[Path], needles: dict[str, bytes]) -> list[str]:
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            try:
                content = path.read_bytes()
            except OSError:
                continue  # a socket or a file removed meanwhile
            found += [f"{what} in {path}" for what, needle in needles.items() if needle in content]
    return found


def test_no_password_token_session_or_key_is_written_in_plain_text(
    system: System, tmp_path: Path, registered: list[str],
) -> None:
    username, password = f"sec-{secrets.token_hex(3)}", "pw-" + secrets.token_urlsafe(16)
    name = f"sec-{secrets.token_hex(3)}"
    with ManagerClient(system.manager_url) as manager:
        manager.signup(username, password)
        token = manager.login(username, password)
        key = manager.register(save_torchscript(make_mlp(), tmp_path / "m.pt"), {**MLP_MANIFEST, "name": name})
        registered.append(name)
        second = manager.create_key(name, "rotated")
        rotated = manager.rotate_key(name, second.id)

    # the dashboard's form sign-in: a session cookie
    with httpx.Client(base_url=system.manager_url) as browser:
        form = browser.get("/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert csrf is not None
        signed_in = browser.post("/login", data={"username": username, "password": password, "csrf_token": csrf[1]})
        assert signed_in.status_code == 303
        session = signed_in.cookies.get("seedserve_session")
    assert session

    wrong = key[:-6] + ("A" * 6 if not key.endswith("A" * 6) else "B" * 6)
    with Client(system.master_url, key) as client:
        eventually(lambda: client.predict(name, x=np.zeros((1, 16), np.float32)), timeout_s=90)
    with httpx.Client(timeout=30) as http:
        for secret in (wrong, second.key):  # a guess and a rotated-away key: both refused and logged as such
            refused = http.post(f"{system.master_url}/models/{name}/predict", json={"x": [[0.0] * 16]},
                                headers={"Authorization": f"Bearer {secret}"})
            assert refused.status_code == 401
    time.sleep(3)  # let buffered logs reach their files

    needles = {
        "password": password.encode(), "API token": token.encode(), "session id": session.encode(),
        "model key": key.encode(), "wrong key": wrong.encode(), "rotated-away key": second.key.encode(),
        "rotated key": rotated.key.encode(),
    }
    roots = [system.data_dir, RAY_SESSION.resolve()]
    assert all(root.is_dir() for root in roots)
    assert _files_holding(roots, needles) == []
    # the search itself finds a secret where one is
    (tmp_path / "canary.log").write_bytes(b"... " + key.encode() + b" ...")
    assert _files_holding([tmp_path], needles) == [f"model key in {tmp_path / 'canary.log'}"]


def test_key_guessing_is_rate_limited_and_the_right_key_still_works(
    system: System, tmp_path: Path, registered: list[str],
) -> None:
    name = f"guess-{secrets.token_hex(3)}"
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        key = manager.register(save_torchscript(make_mlp(), tmp_path / "m.pt"), {**MLP_MANIFEST, "name": name})
    registered.append(name)
    with Client(system.master_url, key) as client:
        eventually(lambda: client.predict(name, x=np.zeros((1, 16), np.float32)), timeout_s=90)
    statuses: list[int] = []
    with httpx.Client(timeout=30) as http:
        # Each replica allows WRONG_KEYS_PER_MINUTE; the model may run up to max_replicas (2).
        while len(statuses) < 3 * WRONG_KEYS_PER_MINUTE and (not statuses or statuses[-1] != 429):
            guess = http.post(f"{system.master_url}/models/{name}/predict", json={"x": [[0.0] * 16]},
                              headers={"Authorization": f"Bearer sk_{secrets.token_urlsafe(32)}"})
            statuses.append(guess.status_code)
        assert statuses[-1] == 429, f"no 429 after {len(statuses)} wrong keys"
        assert set(statuses[:WRONG_KEYS_PER_MINUTE]) == {401}
        assert 1 <= int(guess.headers["Retry-After"]) <= 61
        assert guess.json()["error"]["code"] == "rate_limited"
        right = http.post(f"{system.master_url}/models/{name}/predict", json={"x": [[0.0] * 16]},
                          headers={"Authorization": f"Bearer {key}"})
        assert right.status_code == 200, right.text
