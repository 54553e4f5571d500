"""Maintenance jobs (the approval expiry sweep): only the scheduler leader runs them, and
a process without a scheduler runs them only while no scheduler leads anywhere."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from redis.asyncio import Redis

from scheduler.maintenance import run_while_leaderless
from scheduler.ports import Maintenance
from storage.keys import Keys
from storage.locks import RedisLocks
from tests.scheduler.conftest import FAST, ReplicaFactory, eventually


def _counting(name: str, calls: list[str], every: float = 0.05) -> Maintenance:
    async def run() -> None:
        calls.append(name)

    return Maintenance(name="sweep", every=timedelta(seconds=every), run=run)


async def test_only_the_leader_runs_maintenance_and_a_successor_takes_over(
    make_replica: ReplicaFactory,
) -> None:
    calls: list[str] = []
    first = await make_replica(maintenance=[_counting("first", calls)])
    await first.service.wait_leader()
    second = await make_replica(maintenance=[_counting("second", calls)])
    await eventually(lambda: calls.count("first") >= 3)
    await asyncio.sleep(0.3)
    assert not second.service.is_leader
    assert "second" not in calls  # the standby never swept
    await first.service.stop()
    await second.service.wait_leader(timeout=FAST.lease_ttl.total_seconds() * 4)
    swept_by_first = calls.count("first")
    await eventually(lambda: calls.count("second") >= 2)
    assert calls.count("first") == swept_by_first  # the old leader stopped sweeping


async def test_a_failing_job_keeps_running(make_replica: ReplicaFactory) -> None:
    attempts: list[int] = []

    async def flaky() -> None:
        attempts.append(1)
        raise RuntimeError("database blip")

    replica = await make_replica(
        maintenance=[Maintenance(name="flaky", every=timedelta(seconds=0.05), run=flaky)]
    )
    await replica.service.wait_leader()
    await eventually(lambda: len(attempts) >= 3)
    assert replica.service.is_leader


async def test_without_a_scheduler_the_job_runs_only_while_nobody_leads(
    real_redis: Redis, keys: Keys
) -> None:
    locks = RedisLocks(redis=real_redis, keys=keys)
    calls: list[str] = []
    task = asyncio.create_task(
        run_while_leaderless(_counting("fallback", calls), locks=locks, lease="scheduler")
    )
    try:
        await eventually(lambda: len(calls) >= 2)  # no scheduler anywhere: it sweeps
        lease = await locks.acquire("scheduler", ttl=timedelta(seconds=30))
        assert lease is not None
        await asyncio.sleep(0.1)
        held = len(calls)
        await asyncio.sleep(0.3)
        assert len(calls) == held  # a scheduler leads: it leaves the sweep to it
        await locks.release(lease)
        await eventually(lambda: len(calls) > held)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
