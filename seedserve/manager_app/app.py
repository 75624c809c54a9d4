"""The manager's Starlette application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from seedserve import __version__
from seedserve.errors import SeedserveError, Unavailable, http_status
from seedserve.manager_app import models, profiles
from seedserve.manager_app.limits import BodyLimit
from seedserve.manager_app.state import ManagerState
from seedserve.registry import ModelStore, connect
from seedserve.settings import Settings

__all__ = ["create_app", "create_app_from_env"]

logger = logging.getLogger("seedserve.manager")


async def healthz(request: Request) -> Response:
    state: ManagerState = request.app.state.seedserve
    try:
        await state.store.ping()
        database = "ok"
    except Unavailable as exc:
        database = f"unavailable: {exc.message}"
    status = "ok" if database == "ok" else "degraded"
    return JSONResponse({"status": status, "version": __version__, "components": {"manager": "ok", "database": database}})


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SeedserveError)
    headers = {"Retry-After": "5"} if isinstance(exc, Unavailable) else None
    return JSONResponse(exc.to_body(), status_code=http_status(exc), headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code)


def create_app(settings: Settings, admin_token: str) -> Starlette:
    """The manager app over the database that ``settings`` names."""
    client = connect(settings.resolved_mongo_uri)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.close()

    app = Starlette(
        routes=[Route("/healthz", healthz, methods=["GET"]), *models.routes, *profiles.routes],
        middleware=[Middleware(BodyLimit, max_bytes=settings.max_artifact_bytes + (1 << 20))],
        exception_handlers={SeedserveError: _domain_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.seedserve = ManagerState(settings, ModelStore(client[settings.database]), admin_token)
    return app


def create_app_from_env() -> Starlette:
    """Factory for uvicorn: settings from ``SEEDSERVE_*``; the admin token from
    the environment or ``<data dir>/admin-token``."""
    settings = Settings()
    if settings.admin_token is not None:
        token = settings.admin_token.get_secret_value()
    else:
        token = settings.admin_token_file.read_text().strip()
    return create_app(settings, token)
