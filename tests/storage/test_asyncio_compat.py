"""A cancelled task stays cancelled while it talks to Redis (Python 3.11 ``wait_for``).

Without :mod:`storage._asyncio_compat`, cancelling a task in the middle of a Redis command
was lost about half the time and leaked the command's pooled connection.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

import storage  # noqa: F401  (installs the fix)
from storage import _asyncio_compat

LUA_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return 1 else return 0 end"


async def _lost_cancellation(wait_for: Callable[..., Any]) -> bool:
    """True when ``wait_for`` returns normally although the waiting task was cancelled."""
    loop = asyncio.get_running_loop()
    inner: asyncio.Future[int] = loop.create_future()
    outcome: list[str] = []

    async def waiter() -> None:
        await wait_for(inner, 10)
        outcome.append("returned")
        await asyncio.sleep(10)  # a cancellation that was kept would interrupt this

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    inner.set_result(1)  # the awaited operation finishes ...
    task.cancel()  # ... in the same loop iteration as the cancel
    done, _ = await asyncio.wait({task}, timeout=0.5)
    if not done:
        task.cancel()
        await asyncio.wait({task})
        return True
    return False


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the interpreter's own wait_for is fixed")
async def test_the_interpreter_wait_for_loses_the_cancel_and_ours_does_not() -> None:
    assert await _lost_cancellation(_asyncio_compat.original())  # the defect, shown
    assert not await _lost_cancellation(_asyncio_compat.wait_for)
    assert asyncio.wait_for is _asyncio_compat.wait_for  # importing storage installed it


async def test_wait_for_keeps_its_contract() -> None:
    async def slow() -> str:
        await asyncio.sleep(5)
        return "late"

    async def quick() -> str:
        return "now"

    assert await asyncio.wait_for(quick(), 1) == "now"
    assert await asyncio.wait_for(quick(), None) == "now"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(slow(), 0.01)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(slow(), 0)
    done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    done.set_result("ready")
    assert await asyncio.wait_for(done, 0) == "ready"


async def test_cancelling_redis_commands_is_never_lost(redis: Redis) -> None:
    await redis.set("sbtest:asyncio-compat", "v")

    async def renewer() -> None:
        while True:
            await asyncio.sleep(0)
            await redis.eval(LUA_RENEW, 1, "sbtest:asyncio-compat", "v")
            await redis.get("sbtest:asyncio-compat")

    lost = 0
    rng = random.Random(7)
    for _ in range(150):
        task = asyncio.create_task(renewer())
        await asyncio.sleep(rng.random() * 0.003)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=1.0)
        if not done:  # the task carried on as if never cancelled
            lost += 1
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
            break
    assert lost == 0, "a cancellation of a task in a Redis command was swallowed"
    assert await redis.get("sbtest:asyncio-compat") == b"v"  # the pool still has connections
    await redis.delete("sbtest:asyncio-compat")
