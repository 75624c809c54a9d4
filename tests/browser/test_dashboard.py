"""The dashboard in a real headless Chromium (Debian's, driven by Playwright)
against the whole system from `seedserve up`: sign up, register an image model
through the form, create a key, "try it" with an image, see the prediction.
Screenshots of each step go to test-output/browser/ (or $SEEDSERVE_TEST_OUTPUT)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from playwright.sync_api import Browser, Page, expect, sync_playwright

from seedserve.client import ManagerClient
from seedserve.client.export import save_program
from seedserve.errors import SeedserveError
from tests.conftest import System

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["apple", "ball", "cat", "dog", "egg", "fish", "goat", "hat", "ice", "jar"]


def _chromium() -> str:
    found = os.environ.get("SEEDSERVE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("no chromium: install Debian's package (bash install.sh does) or set SEEDSERVE_CHROMIUM")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        launched = playwright.chromium.launch(executable_path=_chromium(), headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Path:
    base = Path(os.environ.get("SEEDSERVE_TEST_OUTPUT", ROOT / "test-output")) / "browser" / request.node.name
    base.mkdir(parents=True, exist_ok=True)
    return base


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _image_model(path: Path) -> Path:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4),
        torch.nn.Flatten(), torch.nn.Linear(8 * 16, 10),
    ).eval()
    # The format the register page leads with: a torch.export program.
    return save_program(model, {"name": "cnn", "inputs": [{"name": "image", "kind": "image", "size": [32, 32]}],
                                "outputs": [{"name": "logits"}]}, path)


def _picture(path: Path) -> Path:
    picture = Image.new("RGB", (320, 240), "white")
    ImageDraw.Draw(picture).ellipse([100, 50, 220, 190], fill="orange")
    picture.save(path)
    return path


def test_sign_up_register_create_a_key_and_try_it_with_an_image(
    system: System, page: Page, shots: Path, tmp_path: Path,
) -> None:
    username, password = f"web-{secrets.token_hex(3)}", "pw-" + secrets.token_urlsafe(12)
    name = f"web-cnn-{secrets.token_hex(3)}"
    try:
        _walk_through(system, page, shots, tmp_path, username, password, name)
    finally:  # replicas reserve CPU on the 2-CPU node: the model goes, whatever happened
        with ManagerClient(system.manager_url) as manager, contextlib.suppress(SeedserveError):
            manager.login(username, password)
            manager.delete_model(name)


def _walk_through(system: System, page: Page, shots: Path, tmp_path: Path, username: str, password: str,
                  name: str) -> None:
    base = system.manager_url

    # sign up
    page.goto(base + "/")
    expect(page).to_have_url(base + "/login")
    page.get_by_role("link", name="Sign up").first.click()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.screenshot(path=shots / "1-signup.png")
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(base + "/dashboard")
    expect(page.get_by_text("No models yet")).to_be_visible()

    # register through the form: one image input, a labelled output
    page.get_by_role("link", name="Register").first.click()
    page.locator("#model-name").fill(name)
    page.locator("#new-input-kind").select_option("image")
    page.get_by_role("button", name="Add input").click()
    spec = page.locator(".input-spec[data-kind=image]")
    spec.locator("[data-field=name]").fill("image")
    spec.locator("[data-field=size]").fill("[32, 32]")
    spec.locator("[data-field=resize]").select_option("center_crop")
    page.locator("#outputs").fill("logits: " + ", ".join(LABELS))
    page.locator("#artifact").set_input_files(str(_image_model(tmp_path / "cnn.pt2")))
    expect(page.locator("#manifest-preview")).to_contain_text('"kind": "image"')
    page.screenshot(path=shots / "2-register-form.png", full_page=True)
    page.get_by_role("button", name="Register", exact=True).click()
    expect(page.locator("#register-result")).to_be_visible(timeout=120_000)
    expect(page.locator("#register-message")).to_contain_text(f"{name}: version 1 registered")
    expect(page.locator("#register-message")).not_to_contain_text("Warning")  # no deprecated format
    expect(page.locator("#upload-progress")).to_have_attribute("value", "100")
    page.screenshot(path=shots / "3-registered.png", full_page=True)

    # the model page: profile, predictions, examples; create a key
    page.locator("#register-link").click()
    expect(page.locator("#model-title")).to_contain_text(name)
    expect(page.locator("#predictions")).to_contain_text("cpu-local")
    expect(page.locator("#latency-chart .bar").first).to_be_visible()
    expect(page.locator("#example-curl")).to_contain_text('-F "image=@image.png"')
    expect(page.locator("#example-python")).to_contain_text(f'client.predict("{name}"')
    page.locator("#key-label").fill("browser")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#new-key code")).to_be_visible()
    key = page.locator("#new-key code").inner_text()
    assert key.startswith("sk_")
    assert page.locator("#try-key").input_value() == key

    # try it at once: while the reconciler deploys the model the master answers
    # 503 with Retry-After, and the page waits and sends the query again
    page.locator("fieldset[data-input=image] input[type=file]").set_input_files(str(_picture(tmp_path / "try.png")))
    page.get_by_role("button", name="Run").click()
    output = page.locator("#try-output")
    expect(output).to_contain_text("logits_top_k", timeout=150_000)
    shown = output.inner_text()
    assert any(f'"label": "{label}"' in shown for label in LABELS)
    expect(page.locator("#model-status")).to_have_text("RUNNING", timeout=30_000)  # refreshed by the page
    page.screenshot(path=shots / "4-try-it.png", full_page=True)

    # a wrong key in the form is refused by the master, and the page says so
    page.locator("#try-key").fill("sk_wrong")
    page.get_by_role("button", name="Run").click()
    expect(output).to_contain_text("401")
    page.screenshot(path=shots / "5-wrong-key.png", full_page=True)

    # the models list and the cluster page read from the master
    page.get_by_role("link", name="Models").click()
    row = page.locator(f"tr[data-model='{name}']")
    expect(row).to_be_visible()
    expect(row.locator(".status")).to_have_text("RUNNING", timeout=30_000)  # refreshed by the page
    page.screenshot(path=shots / "6-models.png", full_page=True)
    page.get_by_role("link", name="Cluster").click()
    expect(page.locator("#nodes")).to_contain_text("cpu-local")
    expect(page.locator("#replicas")).to_contain_text(name)
    page.screenshot(path=shots / "7-cluster.png", full_page=True)

    # delete from the model page (confirming the dialog)
    page.goto(f"{base}/dashboard/models/{name}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete this model").click()
    expect(page).to_have_url(base + "/dashboard")
    expect(page.get_by_text("No models yet")).to_be_visible()
