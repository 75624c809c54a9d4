"""Per-replica admission: a full replica refuses at once with Retry-After;
queries within capacity and queue wait their turn."""

from __future__ import annotations

import asyncio

import pytest

from seedserve.deployments._admission import Admission, CallTime, Deadlines
from seedserve.errors import Overloaded, http_status


def test_a_full_replica_refuses_at_once_and_admits_the_queue_in_turn() -> None:
    async def scenario() -> tuple[list[str], Overloaded]:
        admission = Admission(capacity=2, max_queued=1)
        release = asyncio.Event()
        order: list[str] = []

        async def query(name: str) -> None:
            async with admission.slot():
                order.append(name)
                await release.wait()

        running = [asyncio.create_task(query(n)) for n in ("a", "b", "c")]
        await asyncio.sleep(0.01)
        assert (admission.running, admission.waiting) == (2, 1)
        with pytest.raises(Overloaded) as caught:
            async with admission.slot():
                pass
        release.set()
        await asyncio.gather(*running)
        assert (admission.running, admission.waiting) == (0, 0)
        async with admission.slot():  # room again
            pass
        return order, caught.value

    order, refused = asyncio.run(scenario())
    assert order == ["a", "b", "c"]
    assert http_status(refused) == 503 and refused.retry_after_s >= 1
    assert refused.to_body()["error"]["retry_after_s"] == refused.retry_after_s


def test_retry_after_grows_with_the_queue_and_the_latency() -> None:
    admission = Admission(capacity=1, max_queued=100)
    admission._latency_s = 2.0
    assert admission.retry_after_s() == 2
    admission.waiting = 4
    assert admission.retry_after_s() == 10


def test_call_time_ignores_a_stalled_call() -> None:
    calls = CallTime(window=5)
    for seconds in (0.0001, 0.0001, 0.0001, 0.0001):
        calls.add(seconds)
    calls.add(0.050)  # one call stalled by the scheduler
    assert calls.seconds == pytest.approx(0.0001)
    for _ in range(3):
        calls.add(0.004)  # the model really got slower
    assert calls.seconds == pytest.approx(0.004)


def test_deadlines_time_out_only_the_blocks_past_theirs_and_leave_other_cancellations_alone() -> None:
    async def scenario() -> None:
        deadlines = Deadlines(0.5)

        async def block(seconds: float) -> str:
            async with deadlines.within():
                await asyncio.sleep(seconds)
            return "done"

        results = await asyncio.gather(block(0.01), block(5), block(0.02), block(5), return_exceptions=True)
        assert results[0] == results[2] == "done"
        assert isinstance(results[1], TimeoutError) and isinstance(results[3], TimeoutError)
        # A later block gets its own full timeout, after the queue emptied.
        assert await block(0.3) == "done"
        # A cancellation from elsewhere stays a cancellation, not a timeout.
        task = asyncio.get_running_loop().create_task(block(5))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
