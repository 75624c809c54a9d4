"""The SDK's retries, readiness wait and timeouts, over httpx's MockTransport
(the transport is swapped; nothing of ours is patched), and what importing
the client pulls in."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from seedserve.client import AsyncClient, Client, Retries
from seedserve.client._base import next_wait, retry_after_s
from seedserve.errors import NotFound, Overloaded, Timeout, Unavailable

URL = "http://seedserve.test"
OVERLOADED = {"error": {"code": "overloaded", "message": "full", "retry_after_s": 0}}
OK = {"y": [[1.0]]}

Handler = Callable[[httpx.Request], httpx.Response]


def _script(*answers: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A transport handler that gives ``answers`` in turn and records the requests."""
    seen: list[httpx.Request] = []
    queue: Iterator[httpx.Response | Exception] = iter(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = next(queue)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handle, seen


def _overloaded(after: str = "0") -> httpx.Response:
    return httpx.Response(503, json=OVERLOADED, headers={"Retry-After": after})


def _client(handler: Handler, retries: int | Retries = 0) -> Client:
    return Client(URL, "k", http_transport=httpx.MockTransport(handler), retries=retries)


def test_without_retries_a_503_raises_its_named_error_after_one_request() -> None:
    handler, seen = _script(_overloaded())
    with pytest.raises(Overloaded):
        _client(handler).predict("m", x=[[0.0]])
    assert len(seen) == 1


def test_a_503_is_sent_again_until_it_succeeds_when_retries_are_asked_for() -> None:
    handler, seen = _script(_overloaded(), _overloaded(), httpx.Response(200, json=OK))
    assert _client(handler, retries=3).predict("m", x=[[0.0]]) == OK
    assert len(seen) == 3
    assert all(json.loads(r.content) == {"x": [[0.0]]} for r in seen)


def test_retries_stop_after_their_number_and_raise_the_last_answer() -> None:
    handler, seen = _script(*[_overloaded() for _ in range(3)])
    with pytest.raises(Overloaded):
        _client(handler, retries=2).predict("m", x=[[0.0]])
    assert len(seen) == 3


def test_a_failed_connection_is_retried_and_then_raised_as_unavailable() -> None:
    handler, seen = _script(httpx.ConnectError("refused"), httpx.Response(200, json=OK))
    assert _client(handler, retries=Retries(attempts=1, backoff_s=0)).predict("m", x=[[0.0]]) == OK
    handler, seen = _script(httpx.ConnectError("refused"), httpx.ConnectError("refused"))
    with pytest.raises(Unavailable, match="cannot reach"):
        _client(handler, retries=Retries(attempts=1, backoff_s=0)).predict("m", x=[[0.0]])
    assert len(seen) == 2


def test_other_errors_are_never_retried() -> None:
    handler, seen = _script(httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}}))
    with pytest.raises(NotFound):
        _client(handler, retries=3).predict("m", x=[[0.0]])
    handler, seen2 = _script(httpx.ReadTimeout("slow"))
    with pytest.raises(Timeout):
        _client(handler, retries=3).predict("m", x=[[0.0]])
    assert len(seen) == len(seen2) == 1


def test_a_read_timeout_is_seedserves_timeout_error_not_httpxs() -> None:
    handler, _ = _script(httpx.ReadTimeout("slow"))
    with pytest.raises(Timeout, match="timeout=") as caught:
        _client(handler).infer("m", x=[[0.0]])
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


def test_the_wait_honours_retry_after_within_its_bound() -> None:
    retries = Retries(attempts=5, max_wait_s=10, backoff_s=0.5)
    assert next_wait(retries, 0, _overloaded("3")) == 3
    assert next_wait(retries, 0, _overloaded("120")) == 10
    assert next_wait(retries, 2, httpx.Response(503)) == 2.0  # no Retry-After: 0.5 doubled twice
    assert next_wait(retries, 0, httpx.ConnectError("refused")) == 0.5
    assert next_wait(retries, 5, _overloaded("1")) is None
    assert next_wait(retries, 0, httpx.Response(500)) is None
    assert next_wait(retries, 0, httpx.ReadTimeout("slow")) is None


def test_retry_after_may_be_seconds_or_an_http_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    date = (now + timedelta(seconds=7)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_after_s(date, now) == 7
    assert retry_after_s("2") == 2
    assert retry_after_s("soon") is None


def test_wait_until_ready_polls_until_the_model_is_served() -> None:
    starting = {"error": "starting", "code": "unavailable"}  # /v2 answers in the protocol's shape
    handler, seen = _script(
        httpx.ConnectError("refused"),
        httpx.Response(503, json=starting, headers={"Retry-After": "0"}),
        httpx.Response(200, json={"name": "m", "ready": True}),
    )
    _client(handler).wait_until_ready("m", timeout=30)
    assert [r.url.path for r in seen] == ["/v2/models/m/ready"] * 3


def test_wait_until_ready_raises_timeout_or_not_found() -> None:
    handler, _ = _script(*[httpx.Response(503, json={}, headers={"Retry-After": "0"})] * 3)
    with pytest.raises(Timeout, match="not ready after 0 s"):
        _client(handler).wait_until_ready("m", timeout=0)
    handler, _ = _script(httpx.Response(404, json={"error": "no model", "code": "not_found"}))
    with pytest.raises(NotFound, match="no model"):
        _client(handler).wait_until_ready("m", timeout=30)


def test_the_async_client_retries_and_waits_the_same_way() -> None:
    handler, seen = _script(_overloaded(), httpx.Response(200, json=OK), httpx.Response(200, json={"ready": True}))

    async def run() -> object:
        async with AsyncClient(URL, "k", http_transport=httpx.MockTransport(handler), retries=1) as client:
            out = await client.predict("m", x=[[0.0]])
            await client.wait_until_ready("m", timeout=5)
            return out

    assert asyncio.run(run()) == OK
    assert len(seen) == 3


def test_importing_the_client_imports_neither_torch_nor_ray_nor_the_audio_stack() -> None:
    code = (
        "import sys, seedserve.client\n"
        "heavy = {'torch', 'ray', 'librosa', 'soundfile', 'soxr', 'starlette', 'pymongo'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_old_name_of_package_handler_says_where_it_moved() -> None:
    with pytest.raises(ImportError, match="seedserve.client.handler"):
        from seedserve.client import package_handler  # noqa: F401
