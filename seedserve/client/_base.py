"""The request-building core shared by the sync and async clients."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

import httpx

from seedserve.errors import SeedserveError, Timeout, Unavailable, from_body

__all__ = [
    "DEFAULT_TIMEOUT", "BaseClient", "Retries", "SyncClient", "next_wait", "raise_for_error", "timed_out",
    "unreachable",
]

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


@dataclass(frozen=True)
class Retries:
    """When a query is sent again: after a 503 (a model starting, or its
    replicas full) and after a failed connection, both of which the server
    never ran. A read timeout is not retried: the query may have run.

    The wait is the response's ``Retry-After`` when it has one, else
    ``backoff_s`` doubled at each attempt; never more than ``max_wait_s``.
    """

    attempts: int = 3
    max_wait_s: float = 30.0
    backoff_s: float = 0.25

    def __post_init__(self) -> None:
        if self.attempts < 0 or self.max_wait_s < 0 or self.backoff_s < 0:
            raise ValueError(f"retries need attempts, max_wait_s and backoff_s >= 0, not {self}")

    def wait(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before sending again after the ``attempt``-th try (0 first)."""
        header = response.headers.get("retry-after") if response is not None else None
        asked = retry_after_s(header) if header else None
        wait = self.backoff_s * 2**attempt if asked is None else asked
        return min(max(wait, 0.0), self.max_wait_s)


def retry_after_s(header: str, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: a number of seconds or an HTTP date; ``None`` if neither."""
    try:
        return float(header)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return (when - (now or datetime.now(UTC))).total_seconds()


_RETRIED_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)


def next_wait(retries: Retries, attempt: int, outcome: httpx.Response | Exception) -> float | None:
    """How long to wait before trying again, or ``None`` to stop: the outcome is final."""
    if attempt >= retries.attempts:
        return None
    if isinstance(outcome, httpx.Response):
        return retries.wait(attempt, outcome) if outcome.status_code == 503 else None
    return retries.wait(attempt) if isinstance(outcome, _RETRIED_ERRORS) else None


def transport_error(url: str, exc: httpx.TransportError) -> SeedserveError:
    """The seedserve error for a failed exchange: ``Timeout`` when no answer came in time."""
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return timed_out(url, exc)
    return unreachable(url, exc)


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


def timed_out(url: str, exc: httpx.TimeoutException) -> SeedserveError:
    kind = type(exc).__name__
    return Timeout(f"no answer from {url} in time ({kind}); raise the client's timeout= or retry later")


