"""The manager's Starlette application."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from seedserve import __version__
from seedserve.errors import SeedserveError, Unavailable, http_status
from seedserve.logs import log_error
from seedserve.manager_app import dashboard
from seedserve.manager_app.artifact_check import SpareSandbox
from seedserve.manager_app.auth import sign_in_limiter
from seedserve.manager_app.limits import BodyLimit
from seedserve.manager_app.master_view import MasterView
from seedserve.manager_app.operations import allowed_methods, api_routes, openapi_document
from seedserve.manager_app.orphans import collect_forever, collect_orphans
from seedserve.manager_app.request_ids import RequestIds
from seedserve.manager_app.state import ManagerState
from seedserve.registry import ModelStore, connect
from seedserve.registry.account_store import AccountStore
from seedserve.registry.invites import InviteStore
from seedserve.settings import Settings

__all__ = ["create_app", "create_app_from_env"]

logger = logging.getLogger("seedserve.manager")


async def healthz(request: Request) -> Response:
    """For readiness probes: 503 when the database or the master (or what the
    master reports down: the reconciler) is down, ``down`` naming which. A
    model whose application failed is not a component: it shows in its own status."""
    state: ManagerState = request.app.state.seedserve
    try:
        await state.store.ping()
        database = "ok"
    except Unavailable as exc:
        database = f"unavailable: {exc.message}"
    master = await state.master.health()
    down = (["database"] if database != "ok" else []) + [name for name in master["down"] if name != "database"]
    body = {"status": "degraded" if down else "ok", "version": __version__, "down": down,
            "components": {"manager": "ok", "database": database, "master": master["report"]}}
    return JSONResponse(body, status_code=503 if down else 200)


async def livez(request: Request) -> Response:
    """For liveness probes: 200 while the process answers, whatever else is down."""
    return JSONResponse({"live": True})


async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi_document())


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SeedserveError)
    log_error(http_status(exc), exc.code, exc.message, exc.input)
    retry = getattr(exc, "retry_after_s", 5 if isinstance(exc, Unavailable) else None)
    headers = None if retry is None else {"Retry-After": str(retry)}
    return JSONResponse(exc.to_body(), status_code=http_status(exc), headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    message, headers = str(exc.detail), dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette's Allow names the first route matching the path; the
        # document knows every method of it (RFC 9110 wants them all).
        documented = allowed_methods(request.url.path)
        if documented:
            headers["Allow"] = ", ".join(documented)
        if "Allow" in headers:
            message = f"{request.method} is not allowed on {request.url.path}; use {headers['Allow']}"
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=exc.status_code, headers=headers)


def create_app(settings: Settings, admin_token: str) -> Starlette:
    """The manager app over the database that ``settings`` names."""
    client = connect(settings.resolved_mongo_uri)
    store = ModelStore(client[settings.database])
    master = MasterView(settings.resolved_master_url, admin_token)
    test_loads = SpareSandbox(settings.sandbox_limits, keep_spare=settings.spare_test_load)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        logger.info("sign-up: %s, handler packages: %s", settings.signup, settings.handlers)
        try:
            await store.adopt_unowned()
        except Unavailable:
            logger.warning("the database is unreachable at start-up; models without an owner stay hidden")
        await collect_orphans(store, settings.data_dir, settings.orphan_age_s)
        collector = asyncio.create_task(collect_forever(store, settings.data_dir, settings.orphan_age_s))
        test_loads.start()
        yield
        await test_loads.aclose()
        collector.cancel()
        await master.close()
        await client.close()

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/livez", livez, methods=["GET"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
            *api_routes(),
            *dashboard.routes,
            Mount("/static", StaticFiles(packages=[("seedserve.manager_app", "static")]), name="static"),
        ],
        middleware=[Middleware(RequestIds), Middleware(BodyLimit, max_bytes=settings.max_artifact_bytes + (1 << 20))],
        exception_handlers={SeedserveError: _domain_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    db = client[settings.database]
    app.state.seedserve = ManagerState(settings, store, AccountStore(db), admin_token, master, sign_in_limiter(),
                                       InviteStore(db), test_loads)
    return app


def create_app_from_env() -> Starlette:
    """Factory for uvicorn: settings from ``SEEDSERVE_*``; the admin token from
    the environment or ``<data dir>/admin-token``."""
    settings = Settings()
    settings.configure_logging("manager")
    if settings.admin_token is not None:
        token = settings.admin_token.get_secret_value()
    else:
        token = settings.admin_token_file.read_text().strip()
    return create_app(settings, token)
