"""Clients for the master: queries to registered models."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import httpx
import numpy as np

from seedserve.client._base import (
    DEFAULT_TIMEOUT,
    BaseClient,
    Retries,
    SyncClient,
    next_wait,
    raise_for_error,
    retry_after_s,
    transport_error,
)
from seedserve.client.encoders import MULTIPART_THRESHOLD, Encoded, encode_inputs
from seedserve.client.v2_binary import decode_infer_response, encode_infer_request
from seedserve.errors import Timeout

__all__ = ["Client", "AsyncClient", "Retries", "Transport"]

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


def _retries(retries: int | Retries) -> Retries:
    return retries if isinstance(retries, Retries) else Retries(attempts=retries)


Outcome = httpx.Response | httpx.TransportError

#: How often :meth:`Client.wait_until_ready` asks when the answer has no ``Retry-After``.
READY_POLL_S = 0.5


def _ready_wait(outcome: Outcome, model: str, timeout: float, left: float) -> float | None:
    """After one readiness check: ``None`` when the model is ready, else how long
    to wait before the next; raises when it is unknown or the time is up."""
    if isinstance(outcome, httpx.Response):
        if outcome.status_code == 200:
            return None
        if outcome.status_code != 503:
            raise_for_error(outcome)
        last = f"HTTP 503: {outcome.text[:200]}"
        asked = retry_after_s(outcome.headers.get("retry-after") or "")
    else:
        last, asked = f"{type(outcome).__name__}: {outcome}", None
    if left <= 0:
        raise Timeout(f"model {model!r} is not ready after {timeout:g} s (last answer {last}); "
                      "see its status on the dashboard or wait longer")
    return min(READY_POLL_S if asked is None else max(asked, 0.0), left)


class Client(SyncClient):
    """Sends queries to one seedserve master with a model's secret key.

    ``retries`` (default 0: none) sends a query again after a 503 or a failed
    connection, waiting as the answer's ``Retry-After`` says (bounded; see
    :class:`Retries`). A query that gets no answer within ``timeout`` raises
    :class:`seedserve.errors.Timeout`.

    >>> Client("http://127.0.0.1:8000", key).predict("mlp", x=[[0.0] * 16])
    """

    def __init__(self, url: str, key: str, *, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 http_transport: httpx.BaseTransport | None = None, retries: int | Retries = 0) -> None:
        super().__init__(url, key)
        self._retries = _retries(retries)
        self._http = httpx.Client(timeout=timeout, transport=http_transport, headers=self._headers)

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            outcome: Outcome
            try:
                outcome = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                outcome = exc
            wait = next_wait(self._retries, attempt, outcome)
            if wait is None:
                break
            time.sleep(wait)
            attempt += 1
        if isinstance(outcome, httpx.TransportError):
            raise transport_error(url, outcome) from outcome
        return outcome

    def wait_until_ready(self, model: str, timeout: float = 60.0, *, version: int | None = None) -> None:
        """Return once ``model`` (or that version) is served; raise
        :class:`~seedserve.errors.NotFound` if it is not registered and
        :class:`~seedserve.errors.Timeout` if it is not ready within ``timeout`` seconds."""
        url = self._url("/v2" + _model_path(model, version) + "/ready")
        deadline = time.monotonic() + timeout
        while True:
            outcome: Outcome
            try:
                outcome = self._http.get(url)
            except httpx.TransportError as exc:
                outcome = exc
            wait = _ready_wait(outcome, model, timeout, deadline - time.monotonic())
            if wait is None:
                return
            time.sleep(wait)

    def predict(
        self, model: str, inputs: dict[str, Any] | None = None, /, *, transport: Transport = "auto",
        version: int | None = None, **kw_inputs: Any
    ) -> dict[str, Any]:
        """Run ``model`` on its inputs, given as keywords (``x=...``) or a dict;
        returns the outputs by name. ``transport``: ``auto`` (multipart when
        files exceed 64 KiB, else JSON), ``json`` or ``multipart``. ``version``:
        that registered version instead of the one the model's endpoint serves."""
        url = self._url(_model_path(model, version) + "/predict")
        response = self._send("POST", url, **_request(inputs, kw_inputs, transport))
        result: dict[str, Any] = raise_for_error(response)
        return result

    def infer(
        self, model: str, inputs: dict[str, Any] | None = None, /, *, version: int | None = None, **kw_inputs: Any
    ) -> dict[str, np.ndarray]:
        """Run ``model`` through the Open Inference Protocol's binary form
        (``/v2/models/{model}[/versions/{version}]/infer``); returns the outputs as numpy arrays."""
        url = self._url("/v2" + _model_path(model, version) + "/infer")
        body, headers = encode_infer_request({**(inputs or {}), **kw_inputs})
        response = self._send("POST", url, content=body, headers=headers)
        if response.status_code >= 400:
            raise_for_error(response)
        return decode_infer_response(response)


class AsyncClient(BaseClient):
    """The asynchronous twin of :class:`Client`."""

    def __init__(self, url: str, key: str, *, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 http_transport: httpx.AsyncBaseTransport | None = None, retries: int | Retries = 0) -> None:
        super().__init__(url, key)
        self._retries = _retries(retries)
        self._http = httpx.AsyncClient(timeout=timeout, transport=http_transport, headers=self._headers)

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            outcome: Outcome
            try:
                outcome = await self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                outcome = exc
            wait = next_wait(self._retries, attempt, outcome)
            if wait is None:
                break
            await asyncio.sleep(wait)
            attempt += 1
        if isinstance(outcome, httpx.TransportError):
            raise transport_error(url, outcome) from outcome
        return outcome

    async def wait_until_ready(self, model: str, timeout: float = 60.0, *, version: int | None = None) -> None:
        """See :meth:`Client.wait_until_ready`."""
        url = self._url("/v2" + _model_path(model, version) + "/ready")
        deadline = time.monotonic() + timeout
        while True:
            outcome: Outcome
            try:
                outcome = await self._http.get(url)
            except httpx.TransportError as exc:
                outcome = exc
            wait = _ready_wait(outcome, model, timeout, deadline - time.monotonic())
            if wait is None:
                return
            await asyncio.sleep(wait)

    async def predict(
        self, model: str, inputs: dict[str, Any] | None = None, /, *, transport: Transport = "auto",
        version: int | None = None, **kw_inputs: Any
    ) -> dict[str, Any]:
        url = self._url(_model_path(model, version) + "/predict")
        response = await self._send("POST", url, **_request(inputs, kw_inputs, transport))
        result: dict[str, Any] = raise_for_error(response)
        return result

    async def infer(
        self, model: str, inputs: dict[str, Any] | None = None, /, *, version: int | None = None, **kw_inputs: Any
    ) -> dict[str, np.ndarray]:
        url = self._url("/v2" + _model_path(model, version) + "/infer")
        body, headers = encode_infer_request({**(inputs or {}), **kw_inputs})
        response = await self._send("POST", url, content=body, headers=headers)
        if response.status_code >= 400:
            raise_for_error(response)
        return decode_infer_response(response)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _model_path(model: str, version: int | None) -> str:
    return f"/models/{model}" + ("" if version is None else f"/versions/{int(version)}")
