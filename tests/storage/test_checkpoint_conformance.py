"""The official LangGraph checkpointer conformance suite, on fakeredis and on real Redis.

The Redis saver must pass every capability, including the three extended ones
(``delete_for_runs``, ``copy_thread``, ``prune``) that ``InMemorySaver`` lacks.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.conformance.report import ProgressCallbacks
from redis.asyncio import Redis

from storage.checkpoint import RedisCheckpointSaver
from storage.keys import Keys


async def test_conformance_suite_passes_all_capabilities(
    redis: Redis, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = type(redis).__name__

    # The suite never writes more than four checkpoints per thread, so the default
    # bound (20) is exercised as shipped; the bound itself is tested in test_checkpoint.py.
    @checkpointer_test(name=f"RedisCheckpointSaver[{backend}]")
    async def factory() -> AsyncIterator[RedisCheckpointSaver]:
        yield RedisCheckpointSaver(redis=redis, keys=keys)

    try:
        report = await validate(factory, progress=ProgressCallbacks.verbose())
    finally:
        await _drop_keys(redis, keys)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        report.print_report()
    with capsys.disabled():
        print(buffer.getvalue())

    assert "Result: FULL (8/8)" in buffer.getvalue()

    failures = [f for result in report.results.values() for f in result.failures]
    assert failures == []
    assert report.conformance_level() == "FULL"
    passed = sorted(name for name, r in report.results.items() if r.detected and r.passed)
    assert passed == sorted(c.value for c in ALL_CAPABILITIES)
    assert len(passed) == 8


async def _drop_keys(redis: Redis, keys: Keys) -> None:
    """Remove this test's keys (SCAN is fine here: tests are not the hot path)."""
    doomed = [k async for k in redis.scan_iter(match=f"{keys.prefix}:*", count=500)]
    if doomed:
        await redis.delete(*doomed)
