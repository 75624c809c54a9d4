"""Clients for the master: queries to registered models."""

from __future__ import annotations

from typing import Any

import httpx

from seedserve.client._base import DEFAULT_TIMEOUT, BaseClient, raise_for_error, unreachable
from seedserve.client.encoders import encode_inputs

__all__ = ["Client", "AsyncClient"]


class Client(BaseClient):
    """Sends queries to one seedserve master with a model's secret key.

    >>> Client("http://127.0.0.1:8000", key).predict("mlp", x=[[0.0] * 16])
    """

    def __init__(self, url: str, key: str, *, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(url, key)
        self._http = httpx.Client(timeout=timeout, transport=transport, headers=self._headers)

    def predict(self, model: str, /, **inputs: Any) -> dict[str, Any]:
        """Run ``model`` on ``inputs`` (input name = value); returns outputs by name."""
        url = self._url(f"/models/{model}/predict")
        try:
            response = self._http.post(url, json=encode_inputs(inputs))
        except httpx.TransportError as exc:
            raise unreachable(url, exc) from exc
        result: dict[str, Any] = raise_for_error(response)
        return result

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(BaseClient):
    """The asynchronous twin of :class:`Client`."""

    def __init__(self, url: str, key: str, *, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(url, key)
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, headers=self._headers)

    async def predict(self, model: str, /, **inputs: Any) -> dict[str, Any]:
        url = self._url(f"/models/{model}/predict")
        try:
            response = await self._http.post(url, json=encode_inputs(inputs))
        except httpx.TransportError as exc:
            raise unreachable(url, exc) from exc
        result: dict[str, Any] = raise_for_error(response)
        return result

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
