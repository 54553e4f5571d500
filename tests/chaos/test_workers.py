"""Workers die and stop; every acked message is still answered exactly once.

Each test prints what it counted (run with ``-s`` to see it)."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.chaos.harness import Deployment, receiver

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(180)]


async def wait_until(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.1)
    return False


async def test_sigkill_of_a_worker_mid_model_call_is_answered_once_by_another(
    deployment: Deployment,
) -> None:
    """Two workers; 12 mentions on 12 threads with a 3 s model; worker A is SIGKILLed while
    its model calls are in flight. Its turns are re-claimed (heartbeats stop, the sweeper of
    worker B puts them back) and answered in their own placeholders: none lost, none twice."""
    async with receiver(deployment):
        a = deployment.start_worker("a", concurrency=6)
        b = deployment.start_worker("b", concurrency=6)
        statuses = [(await deployment.mention(f"ask question {n}"))[0] for n in range(12)]
        assert set(statuses) == {200}
        assert await wait_until(lambda: len(deployment.model.requests) >= 8, 20)
        killed_at = time.monotonic()
        a.signal(signal.SIGKILL)
        a.wait(10)
        done = await wait_until(lambda: deployment.count().answered == 12, 90)
        took = time.monotonic() - killed_at
        counts = deployment.count()
    print(
        f"\nSIGKILL mid model call: {counts}; all answered {took:.1f} s after the kill; "
        f"model calls={len(deployment.model.requests)}"
    )
    assert done, b.output()[-3000:]
    assert counts.duplicates == 0 and counts.unanswered == 0 and counts.wrong == 0


async def test_sigterm_with_20_turns_in_flight_loses_none(deployment: Deployment) -> None:
    """A worker with 20 turns in flight is told to stop: it stops claiming, gives them the
    drain period (1 s, shorter than the 3 s model) and hands the rest back; a second worker
    answers them. Every message answered once."""
    async with receiver(deployment):
        a = deployment.start_worker("a", concurrency=32, drain=1.0)
        for n in range(20):
            status, _ = await deployment.mention(f"ask item {n}")
            assert status == 200
        assert await wait_until(lambda: len(deployment.model.requests) >= 20, 20)
        a.signal(signal.SIGTERM)
        code = a.wait(30)
        after_stop = deployment.count()
        deployment.start_worker("b", concurrency=32)
        done = await wait_until(lambda: deployment.count().answered == 20, 60)
        counts = deployment.count()
    print(
        f"\nSIGTERM with 20 in flight: worker exit code {code}; answered before stop "
        f"{after_stop.answered}; after the second worker: {counts}"
    )
    assert code == 0, a.output()[-3000:]
    assert done
    assert counts.duplicates == 0 and counts.unanswered == 0 and counts.wrong == 0
