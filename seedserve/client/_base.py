"""The request-building core shared by the sync and async clients."""

from __future__ import annotations

from typing import Any, Self

import httpx

from seedserve.errors import SeedserveError, Unavailable, from_body

__all__ = ["DEFAULT_TIMEOUT", "BaseClient", "SyncClient", "raise_for_error", "unreachable"]

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class BaseClient:
    """Base URL, auth header and error decoding; subclasses only send."""

    def __init__(self, url: str, secret: str | None) -> None:
        self.base_url = url.rstrip("/")
        self._headers: dict[str, str] = {}
        if secret is not None:
            self.use_token(secret)

    def use_token(self, secret: str) -> None:
        """Send ``secret`` as the bearer token from now on."""
        self._headers["Authorization"] = f"Bearer {secret}"

    def _url(self, path: str) -> str:
        return self.base_url + path


class SyncClient(BaseClient):
    """A sync client over one ``httpx.Client``, usable as a context manager."""

    _http: httpx.Client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raise_for_error(response: httpx.Response) -> Any:
    """The JSON body of a successful response; else the named seedserve error."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if response.status_code >= 400:
        raise from_body(body, response.status_code)
    return body


def unreachable(url: str, exc: httpx.TransportError) -> SeedserveError:
    return Unavailable(f"cannot reach {url}: {exc}; is seedserve running (`seedserve status`)?")


