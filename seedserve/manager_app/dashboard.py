"""The dashboard: server-rendered pages (Jinja2) with a little JavaScript that
calls the same ``/api`` the SDK uses, with the session cookie and the page's
CSRF token. No build step.

Sign-up and sign-in are plain HTML forms; the sign-up form asks for an invite
code under ``SEEDSERVE_SIGNUP=invite`` and says sign-up is closed under ``closed``. Every visitor gets a session (signed
out at first) so that these forms carry a CSRF token too; signing in ends that
session and starts a new one, so a session id known before sign-in is useless
after it.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from seedserve.codecs import Manifest
from seedserve.codecs.registry import REGISTRY
from seedserve.errors import NotFound, SeedserveError, http_status
from seedserve.manager_app.accounts import sign_in, sign_up
from seedserve.manager_app.auth import SESSION_COOKIE, check_csrf, current_session, set_session_cookie
from seedserve.manager_app.keys import key_view
from seedserve.manager_app.live import cluster_view
from seedserve.manager_app.operations import openapi_document
from seedserve.manager_app.profiles import insight
from seedserve.manager_app.state import ManagerState
from seedserve.registry.account_store import Session

__all__ = ["routes"]

_env = Environment(loader=PackageLoader("seedserve.manager_app", "templates"), autoescape=select_autoescape())
_env.filters["ms"] = lambda v: "—" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.0f}")
_env.filters["num"] = lambda v: "—" if v is None else f"{v:,.0f}"
_env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2)

#: The JSON schema of each input kind, from which the register page builds its form.
_KIND_SCHEMAS: dict[str, Any] = {name: kind.spec.model_json_schema() for name, kind in REGISTRY.items()}


def _render(request: Request, template: str, session: Session | None, status: int = 200, **context: Any) -> Response:
    html = _env.get_template(template).render(
        request=request, user=session["user"] if session else None, csrf=session["csrf"] if session else "",
        **context,
    )
    return HTMLResponse(html, status_code=status)


async def _visitor(request: Request) -> tuple[str, Session, bool]:
    """The visitor's session, a new signed-out one if they have none (then True)."""
    found = await current_session(request)
    if found is not None:
        return found[0], found[1], False
    state: ManagerState = request.app.state.seedserve
    sid, session = await state.accounts.new_session(None)
    return sid, session, True


def _with_cookie(response: Response, request: Request, sid: str, new: bool) -> Response:
    if new:
        set_session_cookie(response, request, sid, max_age_s=12 * 3600)
    return response


async def _signed_in(request: Request) -> Session | Response:
    """The signed-in session, or a redirect to the sign-in page."""
    found = await current_session(request)
    if found is None or found[1]["user"] is None:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    return found[1]


def _safe_next(value: Any) -> str:
    return value if isinstance(value, str) and value.startswith("/") and not value.startswith("//") else "/dashboard"


async def index(request: Request) -> Response:
    found = await current_session(request)
    return RedirectResponse("/dashboard" if found and found[1]["user"] else "/login", status_code=303)


async def _account_form(request: Request, template: str) -> Response:
    """GET: the sign-up or sign-in form. POST: check the CSRF token, create the
    account (sign-up), check the password, then rotate the session."""
    state: ManagerState = request.app.state.seedserve
    sid, session, new = await _visitor(request)
    policy = state.settings.signup
    if request.method == "GET":
        page = _render(request, template, session, next=_safe_next(request.query_params.get("next")), signup=policy)
        return _with_cookie(page, request, sid, new)
    async with request.form(max_files=0, max_fields=8, max_part_size=4096) as form:
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
    username, password, target = fields.get("username", ""), fields.get("password", ""), _safe_next(fields.get("next"))
    try:
        check_csrf(session, fields.get("csrf_token"))
        if template == "signup.html":
            await sign_up(state, username, password, fields.get("invite"), by_admin=False)
        user = await sign_in(state, request, username, password)
    except SeedserveError as exc:
        page = _render(request, template, session, status=http_status(exc), error=exc.message, username=username,
                       next=target, signup=policy, invite=fields.get("invite", ""))
        return _with_cookie(page, request, sid, new)
    await state.accounts.end_session(sid)  # rotate: the pre-sign-in id dies here
    new_sid, _ = await state.accounts.new_session(user)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, new_sid, max_age_s=12 * 3600)
    return response


async def signup(request: Request) -> Response:
    return await _account_form(request, "signup.html")


async def login(request: Request) -> Response:
    return await _account_form(request, "login.html")


async def logout(request: Request) -> Response:
    state: ManagerState = request.app.state.seedserve
    found = await current_session(request)
    if found is not None:
        async with request.form(max_files=0, max_fields=4, max_part_size=1024) as form:
            token = form.get("csrf_token")
        check_csrf(found[1], token if isinstance(token, str) else None)
        await state.accounts.end_session(found[0])
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def models_page(request: Request) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    state: ManagerState = request.app.state.seedserve
    user = str(session["user"])
    docs = await state.store.list(user)
    cluster = await cluster_view(state, user)
    rows = [{"name": d["name"], "version": d["pinned"] or d["latest"], "latest": d["latest"], "pinned": d["pinned"],
             **cluster["models"].get(d["name"], {})} for d in docs]
    return _render(request, "models.html", session, rows=rows, master=cluster["master"])


async def register_page(request: Request) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    return _render(request, "register.html", session, kind_schemas=_KIND_SCHEMAS)


async def model_page(request: Request) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    state: ManagerState = request.app.state.seedserve
    user, name = str(session["user"]), request.path_params["name"]
    try:
        doc = await state.store.get(name, user)
    except NotFound as exc:
        return _render(request, "error.html", session, status=404, error=exc.message)
    versions = await state.store.versions(name)
    serving = doc["pinned"] or doc["latest"]
    current = next((v for v in versions if v["version"] == serving), versions[-1] if versions else None)
    if current is None:
        return _render(request, "error.html", session, status=404, error=f"model {name!r} has no versions")
    manifest = Manifest.model_validate(current["manifest"])
    info = await insight(state.store, manifest, current.get("profile"), current.get("measured"))
    cluster = await cluster_view(state, user)
    return _render(
        request, "model.html", session, name=name, doc=doc, serving=serving, versions=versions,
        manifest=manifest, info=info, keys=[key_view(k) for k in doc["keys"]], live=cluster["models"].get(name, {}),
        master=cluster["master"], master_url=state.master.url, examples=_examples(name, manifest, state.master.url),
        chart=_chart(info["predictions"]),
        forms={spec.name: _form(spec) for spec in manifest.inputs},
        declared={spec.name: spec.model_dump(mode="json", exclude={"name", "kind"}, exclude_defaults=True)
                  for spec in manifest.inputs},
    )


async def cluster_page(request: Request) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    state: ManagerState = request.app.state.seedserve
    return _render(request, "cluster.html", session, cluster=await cluster_view(state, str(session["user"])))


async def tokens_page(request: Request) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    state: ManagerState = request.app.state.seedserve
    tokens = await state.accounts.tokens(str(session["user"]))
    return _render(request, "tokens.html", session, tokens=tokens)


async def docs_page(request: Request) -> Response:
    found = await current_session(request)
    return _render(request, "docs.html", found[1] if found else None, spec=openapi_document())


def _placeholder(spec: Any) -> tuple[Any, str | None]:
    """An example value for an input in JSON, and the file to send instead, if it is a file."""
    form = REGISTRY[spec.kind].form
    if form.widget == "file":
        return None, form.file
    return form.example(spec), None


def _form(spec: Any) -> dict[str, Any]:
    """How the "try it" form takes this input, as the page reads it: the
    widget (``data-form``), what a file chooser accepts, the text a box
    starts with, and an addition to the legend."""
    form = REGISTRY[spec.kind].form
    example = form.example(spec)
    text = example if isinstance(example, str) or example is None else json.dumps(example)
    return {"widget": form.widget, "accept": form.accept, "text": text or "", "note": form.note(spec)}


def _examples(name: str, manifest: Manifest, master_url: str) -> dict[str, str]:
    """Copy-paste queries for this model's inputs: curl and the Python SDK."""
    curl = [f"curl -X POST {master_url}/models/{name}/predict \\", '  -H "Authorization: Bearer $SEEDSERVE_KEY" \\']
    python = ["from pathlib import Path", "from seedserve.client import Client", "",
              f'client = Client("{master_url}", key)  # one of this model\'s '
              'keys', f'outputs = client.predict("{name}",']
    files = any(_placeholder(spec)[1] for spec in manifest.inputs)
    json_body: dict[str, Any] = {}
    for spec in manifest.inputs:
        value, file = _placeholder(spec)
        if file is not None:
            curl.append(f'  -F "{spec.name}=@{file}" \\')
            python.append(f'    {spec.name}=Path("{file}"),')
        elif files:
            form_value = value if isinstance(value, str) else json.dumps(value)
            curl.append(f"  -F '{spec.name}={form_value}' \\")
            python.append(f"    {spec.name}={value!r},")
        else:
            json_body[spec.name] = value
            python.append(f"    {spec.name}={value!r},")
    if not files:
        curl.append('  -H "Content-Type: application/json" \\')
        curl.append(f"  -d '{json.dumps(json_body)}'")
    else:
        curl[-1] = curl[-1].removesuffix(" \\")
    python.append(")")
    return {"curl": "\n".join(curl), "python": "\n".join(python)}


def _chart(predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bars of the batch-1 prediction per worker type, on a log scale (types
    differ by orders of magnitude), with the measured latency where there is one."""
    rows = [p for p in predictions if p["batch_size"] == 1]
    values = [v for p in rows for v in (p["latency_ms"], p.get("measured_p50_ms")) if v]
    low, high = math.log10(min(values, default=0.01)) - 0.3, math.log10(max(values, default=1.0)) + 0.1

    def width(ms: float | None) -> float | None:
        return None if not ms else max(1.0, 100.0 * (math.log10(ms) - low) / (high - low))

    return [{"worker": p["worker_type"], "ms": p["latency_ms"], "pct": width(p["latency_ms"]),
             "measured_ms": p.get("measured_p50_ms"), "measured_pct": width(p.get("measured_p50_ms"))} for p in rows]


routes = [
    Route("/", index, methods=["GET"]),
    Route("/signup", signup, methods=["GET", "POST"]),
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/docs", docs_page, methods=["GET"]),
    Route("/dashboard", models_page, methods=["GET"]),
    Route("/dashboard/register", register_page, methods=["GET"]),
    Route("/dashboard/models/{name}", model_page, methods=["GET"]),
    Route("/dashboard/cluster", cluster_page, methods=["GET"]),
    Route("/dashboard/tokens", tokens_page, methods=["GET"]),
]

