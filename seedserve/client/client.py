"""Clients for the master: queries to registered models."""

from __future__ import annotations

from typing import Any, Literal

import httpx
import numpy as np

from seedserve.client._base import DEFAULT_TIMEOUT, BaseClient, SyncClient, raise_for_error, unreachable
from seedserve.client.encoders import MULTIPART_THRESHOLD, Encoded, encode_inputs
from seedserve.client.oip import decode_infer_response, encode_infer_request

__all__ = ["Client", "AsyncClient", "Transport"]

Transport = Literal["auto", "json", "multipart"]


def _request(inputs: dict[str, Any] | None, kw_inputs: dict[str, Any], transport: Transport) -> dict[str, Any]:
    """httpx request arguments for a query: JSON, or multipart when files are
    large (``auto``) or when asked."""
    encoded: Encoded = encode_inputs({**(inputs or {}), **kw_inputs})
    multipart = transport == "multipart" or (transport == "auto" and encoded.file_bytes > MULTIPART_THRESHOLD)
    if transport not in ("auto", "json", "multipart"):
        raise ValueError(f"transport must be 'auto', 'json' or 'multipart', not {transport!r}")
    if multipart:
        return {"files": encoded.multipart()}
    return {"json": encoded.json_body()}


class Client(SyncClient):
    """Sends queries to one seedserve master with a model's secret key.

    >>> Client("http://127.0.0.1:8000", key).predict("mlp", x=[[0.0] * 16])
    """

    def __init__(self, url: str, key: str, *, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(url, key)
        self._http = httpx.Client(timeout=timeout, transport=transport, headers=self._headers)

    def predict(
        self, model: str, inputs: dict[str, Any] | None = None, /, *, transport: Transport = "auto",
        version: int | None = None, **kw_inputs: Any
    ) -> dict[str, Any]:
        """Run ``model`` on its inputs, given as keywords (``x=...``) or a dict;
        returns the outputs by name. ``transport``: ``auto`` (multipart when
        files exceed 64 KiB, else JSON), ``json`` or ``multipart``. ``version``:
        that registered version instead of the one the model's endpoint serves."""
        url = self._url(_model_path(model, version) + "/predict")
        try:
            response = self._http.post(url, **_request(inputs, kw_inputs, transport))
        except httpx.TransportError as exc:
            raise unreachable(url, exc) from exc
        result: dict[str, Any] = raise_for_error(response)
        return result

    def infer(
        self, model: str, inputs: dict[str, Any] | None = None, /, *, version: int | None = None, **kw_inputs: Any
    ) -> dict[str, np.ndarray]:
        """Run ``model`` through the Open Inference Protocol's binary form
        (``/v2/models/{model}[/versions/{version}]/infer``); returns the outputs as numpy arrays."""
        url = self._url("/v2" + _model_path(model, version) + "/infer")
        body, headers = encode_infer_request({**(inputs or {}), **kw_inputs})
        try:
            response = self._http.post(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise unreachable(url, exc) from exc
        if response.status_code >= 400:
            raise_for_error(response)
        return decode_infer_response(response)


class AsyncClient(BaseClient):
    """The asynchronous twin of :class:`Client`."""

    def __init__(self, url: str, key: str, *, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(url, key)
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, headers=self._headers)

    async def predict(
        self, model: str, inputs: dict[str, Any] | None = None, /, *, transport: Transport = "auto",
        version: int | None = None, **kw_inputs: Any
    ) -> dict[str, Any]:
        url = self._url(_model_path(model, version) + "/predict")
        try:
            response = await self._http.post(url, **_request(inputs, kw_inputs, transport))
        except httpx.TransportError as exc:
            raise unreachable(url, exc) from exc
        result: dict[str, Any] = raise_for_error(response)
        return result

    async def infer(
        self, model: str, inputs: dict[str, Any] | None = None, /, *, version: int | None = None, **kw_inputs: Any
    ) -> dict[str, np.ndarray]:
        url = self._url("/v2" + _model_path(model, version) + "/infer")
        body, headers = encode_infer_request({**(inputs or {}), **kw_inputs})
        try:
            response = await self._http.post(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise unreachable(url, exc) from exc
        if response.status_code >= 400:
            raise_for_error(response)
        return decode_infer_response(response)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _model_path(model: str, version: int | None) -> str:
    return f"/models/{model}" + ("" if version is None else f"/versions/{int(version)}")
