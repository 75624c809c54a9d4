"""The point_cloud kind end to end on the real stack: a model that takes a
point cloud answers with the very points it got over JSON (nested lists and
base64), multipart (a JSON part and a .npy file) and the Open Inference
Protocol; a cloud past max_points is refused by name and limit; the
dashboard's "try it" form takes it as JSON, in a real Chromium."""

from __future__ import annotations

import io
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
import torch
from playwright.sync_api import expect, sync_playwright

from seedserve.client import Client, ManagerClient
from seedserve.client.encoders import File
from seedserve.client.v2_binary import encode_infer_request
from tests.browser.test_dashboard import _chromium
from tests.conftest import System
from tests.helpers import error_fields, eventually

pytestmark = pytest.mark.integration

NAME = "point-cloud"
MANIFEST = {"name": NAME, "inputs": [{"name": "points", "kind": "point_cloud", "max_points": 2000}],
            "outputs": [{"name": "echo"}]}
CLOUD = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)


class Echo(torch.nn.Module):
    """The points back: equal answers mean the replica decoded equal arrays."""

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return points * 1.0


@dataclass
class Served:
    key: str
    session: httpx.Client  # the signed-in owner on the manager, with the page's CSRF token set


@pytest.fixture(scope="module")
def served(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    artifact = tmp_path_factory.mktemp("point-cloud") / "echo.pt"
    torch.jit.script(Echo()).save(str(artifact))
    with httpx.Client(base_url=system.manager_url) as session:
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', session.get("/signup").text).group(1)  # type: ignore[union-attr]
        signed_up = session.post("/signup", data={"username": f"pc-{secrets.token_hex(3)}",
                                                  "password": secrets.token_urlsafe(12), "csrf_token": csrf})
        assert signed_up.status_code == 303, signed_up.text
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', session.get("/dashboard").text).group(1)  # type: ignore[union-attr]
        token = session.post("/api/tokens", json={"label": "pc"}, headers={"X-CSRF-Token": csrf}).json()["token"]
        with ManagerClient(system.manager_url, token) as manager:
            key = manager.register(artifact, MANIFEST)
            with Client(system.master_url, key) as client:
                eventually(lambda: client.predict(NAME, points=CLOUD), timeout_s=90)
                eventually(lambda: client.infer(NAME, points=CLOUD), timeout_s=60)
            yield Served(key, session)
            manager.delete_model(NAME)


def _npy(array: np.ndarray) -> File:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return File(buffer.getvalue(), "application/x-npy", "cloud.npy")


def test_a_point_cloud_reaches_the_model_unchanged_over_json_multipart_and_oip(system: System, served: Served) -> None:
    large = np.random.default_rng(1).uniform(-5, 5, (1500, 3)).astype(np.float32)  # the SDK sends it as base64
    with Client(system.master_url, served.key) as client:
        answers = {
            "json lists": (CLOUD, client.predict(NAME, points=CLOUD.tolist(), transport="json")["echo"]),
            "json base64": (large, client.predict(NAME, points=large, transport="json")["echo"]),
            "multipart part": (CLOUD, client.predict(NAME, points=CLOUD, transport="multipart")["echo"]),
            "multipart .npy": (large, client.predict(NAME, points=_npy(large), transport="multipart")["echo"]),
            "oip binary": (large, client.infer(NAME, points=large)["echo"]),
        }
        metadata = httpx.get(f"{system.master_url}/v2/models/{NAME}", headers={"Authorization": f"Bearer {served.key}"})
    for transport, (sent, got) in answers.items():
        np.testing.assert_array_equal(np.asarray(got, np.float32), sent, err_msg=transport)
    assert metadata.json()["inputs"] == [{"name": "points", "datatype": "FP32", "shape": [-1, 3]}]


def test_a_cloud_past_max_points_is_refused_by_name_and_limit_over_each_route(system: System, served: Served) -> None:
    too_many = np.zeros((2001, 3), np.float32)
    expected = ("input 'points': 2,001 points exceeds the limit of 2,000; downsample or raise max_points "
                "in the manifest")
    auth = {"Authorization": f"Bearer {served.key}"}
    body, headers = encode_infer_request({"points": too_many})
    answers = [
        httpx.post(f"{system.master_url}/models/{NAME}/predict", json={"points": too_many.tolist()}, headers=auth),
        httpx.post(f"{system.master_url}/v2/models/{NAME}/infer", content=body, headers={**auth, **headers}),
        httpx.post(f"{system.master_url}/models/{NAME}/predict", headers=auth,
                   files=[("points", ("cloud.npy", _npy(too_many).data, "application/x-npy"))]),
    ]
    for answer in answers:
        assert answer.status_code == 413, answer.text
        assert error_fields(answer)["message"] == expected
        assert error_fields(answer)["input"] == "points"
    flat = httpx.post(f"{system.master_url}/models/{NAME}/predict", json={"points": [[1.0, 2.0]]}, headers=auth)
    assert flat.status_code == 400 and "does not match the declared [-1, 3]" in error_fields(flat)["message"]


def test_the_dashboard_offers_a_json_box_for_a_point_cloud_and_runs_it_in_chromium(
    system: System, served: Served,
) -> None:
    page_html = served.session.get(f"/dashboard/models/{NAME}").text
    fieldset = re.search(r'<fieldset data-input="points"[^>]*>.*?</fieldset>', page_html, re.S)
    assert fieldset is not None, page_html[-3000:]
    assert 'data-kind="point_cloud" data-form="json"' in fieldset.group(0)
    assert "[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]" in fieldset.group(0)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), headless=True, args=["--no-sandbox"])
        context = browser.new_context()
        context.add_cookies([{"name": cookie.name, "value": cookie.value or "", "url": system.manager_url}
                             for cookie in served.session.cookies.jar])
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{system.manager_url}/dashboard/models/{NAME}")
        page.locator("#try-key").fill(served.key)
        page.get_by_role("button", name="Run").click()
        expect(page.locator("#try-output")).to_contain_text('"echo"', timeout=60_000)
        shown = page.locator("#try-output").inner_text()
        browser.close()
    assert not errors, errors
    assert re.sub(r"\s+", "", shown).count("[1,0,0]") == 1  # the example's points came back
