"""The dashboard's server-rendered pages over real HTTP (no browser): each
renders for its owner, redirects a visitor to sign in, and hides other
users' models. The browser test drives the same pages in Chromium."""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx

from seedserve.client import ManagerClient
from tests.helpers import MLP_MANIFEST, make_mlp, save_torchscript
from tests.manager.conftest import Manager


@contextlib.contextmanager
def _signed_in(manager: Manager, username: str, password: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=manager.url) as browser:
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/signup").text).group(1)  # type: ignore[union-attr]
        answer = browser.post("/signup", data={"username": username, "password": password, "csrf_token": csrf})
        assert answer.status_code == 303, answer.text
        yield browser


def test_every_page_renders_for_its_owner_and_only_for_them(manager: Manager, tmp_path: Path) -> None:
    owner = f"pages-{secrets.token_hex(3)}"
    name = f"pages-model-{secrets.token_hex(3)}"
    with _signed_in(manager, owner, "pw-" + secrets.token_urlsafe(10)) as browser:
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', browser.get("/dashboard").text).group(1)  # type: ignore[union-attr]
        token = browser.post("/api/tokens", json={"label": "pages"}, headers={"X-CSRF-Token": csrf}).json()["token"]
        with ManagerClient(manager.url, token) as client:
            manifest = {**MLP_MANIFEST, "name": name, "objective": {"latency_ms": 50, "peak_rps": 10}}
            client.register(save_torchscript(make_mlp(), tmp_path / "m.pt"), manifest)
        for path, expected in [
            ("/dashboard", name),
            ("/dashboard/register", "kind-schemas"),
            (f"/dashboard/models/{name}", "Predicted latency per worker type"),
            ("/dashboard/cluster", "Nodes"),
            ("/dashboard/tokens", "pages"),
            ("/docs", "/api/models/{name}/keys"),
        ]:
            page = browser.get(path)
            assert page.status_code == 200, (path, page.status_code, page.text[-2000:])
            assert expected in page.text, path
        model_page = browser.get(f"/dashboard/models/{name}").text
        assert "cpu-local" in model_page and "Recommendation" in model_page and "x=" in model_page
        # no master runs here: the pages say so instead of failing
        assert "did not answer" in browser.get("/dashboard").text
    with _signed_in(manager, f"other-{secrets.token_hex(3)}", "pw-" + secrets.token_urlsafe(10)) as other:
        assert other.get(f"/dashboard/models/{name}").status_code == 404
        assert name not in other.get("/dashboard").text
    with httpx.Client(base_url=manager.url) as visitor:
        for path in ("/dashboard", f"/dashboard/models/{name}", "/dashboard/cluster", "/dashboard/tokens"):
            answer = visitor.get(path)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
