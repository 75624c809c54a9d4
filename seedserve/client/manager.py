"""Client for the manager's API: register, list, show and delete models."""

from __future__ import annotations

import json
from os import PathLike
from pathlib import Path
from typing import Any

import httpx

from seedserve.client._base import DEFAULT_TIMEOUT, SyncClient, raise_for_error, unreachable

__all__ = ["ManagerClient"]

_FORMATS_BY_SUFFIX = {".pt2": "export", ".zip": "handler"}


class ManagerClient(SyncClient):
    """The manager's API with an admin (later: user) token."""

    def __init__(self, url: str, token: str, *, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(url, token)
        self._http = httpx.Client(timeout=timeout, transport=transport, headers=self._headers)

    def register(self, artifact_path: str | PathLike[str], manifest: dict[str, Any], *,
                 format: str | None = None) -> str | None:
        """Register a model, or the next version of one already registered.
        Returns a new model's secret key (shown only this once); None for a
        new version, which the model's existing keys serve. ``format``:
        ``torchscript``, ``export`` (a ``torch.export`` .pt2) or ``handler``
        (a zip from :func:`package_handler`); by default from the file's suffix."""
        path = Path(artifact_path)
        format = format or _FORMATS_BY_SUFFIX.get(path.suffix.lower(), "torchscript")
        with path.open("rb") as artifact:
            files = {"artifact": (path.name, artifact, "application/octet-stream")}
            data = {"manifest": json.dumps(manifest), "format": format}
            body = self._send("POST", "/api/models", files=files, data=data)
        return None if body["key"] is None else str(body["key"])

    def list_models(self) -> list[dict[str, Any]]:
        return list(self._send("GET", "/api/models")["models"])

    def get_model(self, name: str) -> dict[str, Any]:
        return dict(self._send("GET", f"/api/models/{name}"))

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of ``name``, oldest first."""
        return list(self._send("GET", f"/api/models/{name}/versions")["versions"])

    def pin(self, name: str, version: int | None) -> dict[str, Any]:
        """Serve ``version`` at the model's endpoint (a rollback), or the latest if None."""
        return dict(self._send("PUT", f"/api/models/{name}/pin", json={"version": version}))

    def delete_model(self, name: str) -> None:
        self._send("DELETE", f"/api/models/{name}")

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        url = self._url(path)
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise unreachable(url, exc) from exc
        return raise_for_error(response)

