"""The registry commands of the real ``seedserve`` executable, run as a
subprocess against the manager over real HTTP: login (saving a token readable
by the user only), register with a progress bar, models, versions and pinning,
keys, delete; and errors that say what to do."""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
from pathlib import Path

import pytest

from seedserve.client import ManagerClient
from tests.conftest import VENV_BIN
from tests.helpers import MLP_MANIFEST, make_mlp, save_torchscript
from tests.manager.conftest import Manager


class Cli:
    def __init__(self, config_dir: Path) -> None:
        self.env = {**os.environ, "SEEDSERVE_CONFIG_DIR": str(config_dir)}
        for name in ("SEEDSERVE_MANAGER_URL", "SEEDSERVE_TOKEN"):
            self.env.pop(name, None)

    def __call__(self, *args: str, ok: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(VENV_BIN / "seedserve"), *args], env=self.env, input=stdin,
                              capture_output=True, text=True, timeout=120)
        if ok:
            assert done.returncode == 0, f"seedserve {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        else:
            assert done.returncode != 0, f"seedserve {' '.join(args)} should have failed:\n{done.stdout}"
        return done


def test_login_register_versions_keys_delete(manager: Manager, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "config")
    username, password = f"cli-{secrets.token_hex(3)}", "pw-" + secrets.token_urlsafe(12)
    name = f"cli-model-{secrets.token_hex(3)}"

    # not signed in yet: the error says what to run
    refused = cli("models", ok=False)
    assert "seedserve login" in refused.stderr

    signed_in = cli("login", "--url", manager.url, "--signup", "--username", username, "--password", password)
    assert f"signed in as {username}" in signed_in.stdout
    saved = tmp_path / "config" / "credentials.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    credentials = json.loads(saved.read_text())
    assert credentials["url"] == manager.url and credentials["token"].startswith("st_")
    assert password not in saved.read_text()

    # a wrong password: a clear refusal, nothing saved over the good token
    cli("login", "--url", manager.url, "--username", username, "--password", "wrong-password", ok=False)
    assert json.loads(saved.read_text())["token"] == credentials["token"]

    assert "NAME" in cli("models").stdout and name not in cli("models").stdout

    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({**MLP_MANIFEST, "name": name}))
    artifact = save_torchscript(make_mlp(), tmp_path / "mlp.pt")
    first = cli("register", str(artifact), "--manifest", str(manifest))
    assert f"{name}: version 1 registered" in first.stdout
    assert "key (shown only once): sk_" in first.stdout
    assert "uploading" in first.stdout + first.stderr
    second = cli("register", str(artifact), "--manifest", str(manifest))
    assert f"{name}: version 2 registered" in second.stdout

    listed = json.loads(cli("models", "--json").stdout)
    assert [(m["name"], m["version"], m["latest"]) for m in listed] == [(name, 2, 2)]

    pinned = cli("versions", name, "--pin", "1")
    assert f"{name} now serves version 1" in pinned.stdout
    rows = [line.split() for line in pinned.stdout.splitlines()[2:]]
    assert [row[:2] for row in rows] == [["1", "*"], ["2", "torchscript"]]
    assert manager.db["models"].find_one({"name": name})["pinned"] == 1
    cli("versions", name, "--unpin")
    assert manager.db["models"].find_one({"name": name})["pinned"] is None

    created = cli("keys", "create", name, "--label", "ci").stdout
    key_id, secret = created.split()[1], created.split()[-1]
    assert secret.startswith("sk_")
    listed_keys = cli("keys", "list", name).stdout
    assert key_id in listed_keys and "ci" in listed_keys and secret not in listed_keys
    rotated = cli("keys", "rotate", name, key_id).stdout
    new_id = rotated.split()[1]
    assert new_id != key_id and f"replaces {key_id}" in rotated
    cli("keys", "revoke", name, new_id)
    assert new_id not in cli("keys", "list", name).stdout

    # another account's token sees nothing of it
    other = Cli(tmp_path / "other")
    other("login", "--url", manager.url, "--signup", "--username", username + "-b", "--password", password)
    assert "not_found" in other("versions", name, ok=False).stderr
    assert "not_found" in other("delete", name, "--yes", ok=False).stderr

    # delete asks first; "n" keeps the model
    kept = cli("delete", name, ok=False, stdin="n\n")
    assert "Aborted" in kept.stderr
    assert manager.db["models"].find_one({"name": name}) is not None
    deleted = cli("delete", name, "--yes")
    assert f"deleted {name} (2 version(s))" in deleted.stdout
    assert manager.db["models"].find_one({"name": name}) is None


def test_register_refuses_a_bad_manifest_before_uploading(manager: Manager, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "config")
    username, password = f"cli-{secrets.token_hex(3)}", "pw-" + secrets.token_urlsafe(12)
    cli("login", "--url", manager.url, "--signup", "--username", username, "--password", password)
    artifact = save_torchscript(make_mlp(), tmp_path / "mlp.pt")
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{not json")
    assert "not valid JSON" in cli("register", str(artifact), "--manifest", str(manifest), ok=False).stderr
    manifest.write_text(json.dumps({**MLP_MANIFEST, "name": "Bad Name!"}))
    refused = cli("register", str(artifact), "--manifest", str(manifest), ok=False).stderr
    assert "name" in refused
    assert manager.db["models"].find_one({"name": "Bad Name!"}) is None


@pytest.mark.parametrize("command", [["models"], ["keys", "list", "x"]])
def test_a_revoked_token_is_refused(manager: Manager, tmp_path: Path, command: list[str]) -> None:
    cli = Cli(tmp_path / "config")
    username, password = f"cli-{secrets.token_hex(3)}", "pw-" + secrets.token_urlsafe(12)
    cli("login", "--url", manager.url, "--signup", "--username", username, "--password", password)
    saved = json.loads((tmp_path / "config" / "credentials.json").read_text())
    cli("models")
    with ManagerClient(manager.url, saved["token"]) as client:
        client.revoke_token(saved["token_id"])
    assert "unauthenticated" in cli(*command, ok=False).stderr
