"""A small async client for Serve's REST API on the Ray dashboard
(``GET``/``PUT /api/serve/applications/``), the same API ``serve deploy`` uses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import httpx

__all__ = ["ServeRestApi", "ray_auth_headers", "ray_auth_token"]

_PATH = "/api/serve/applications/"


def ray_auth_headers() -> dict[str, str]:
    """Ray's cluster token as an HTTP header, when there is one.

    Ray turns token auth on by default and its dashboard then answers 401
    without it.
    """
    token = ray_auth_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def ray_auth_token() -> str | None:
    """Ray's cluster token, read where Ray keeps it: ``RAY_AUTH_TOKEN``, the
    file ``RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token``. It is read at
    each call because the file appears only once a head has started."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
        try:
            token = path.read_text().strip()
        except OSError:
            return None
    return token or None


class ServeRestApi:
    """Reads and replaces the cluster's Serve applications."""

    def __init__(self, dashboard_url: str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(
            base_url=dashboard_url, timeout=30.0, transport=transport, headers=ray_auth_headers()
        )

    async def details(self) -> dict[str, Any]:
        """Serve's instance details: http_options and every application."""
        response = await self._client.get(_PATH)
        response.raise_for_status()
        return cast(dict[str, Any], response.json())

    async def deploy(self, config: dict[str, Any]) -> None:
        """Replace all applications with ``config`` (a ServeDeploySchema body)."""
        response = await self._client.put(_PATH, json=config)
        if response.status_code >= 400:
            raise RuntimeError(f"Serve refused the config (HTTP {response.status_code}): {response.text[:2000]}")

    async def aclose(self) -> None:
        await self._client.aclose()
