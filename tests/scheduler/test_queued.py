"""Scheduled firings on the run queue: the leader only enqueues, workers post.

One leader-elected scheduler and two workers, each a Procrastinate worker with its own
queue connection pool, on one PostgreSQL and one Redis. 200 one-off schedules fire within one
minute; every firing is posted exactly once, by the workers, and the leader's loop posts
nothing. A leader hand-over that enqueues the same firing again adds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from scheduler.ports import DropNotice, Posted
from scheduler.queued import FIRE_KIND, QueuedFirings
from scheduler.service import SchedulerConfig
from scheduler.triggers import OnceTrigger
from storage.keys import Keys
from storage.runqueue import Handlers, RunQueue, ensure_queue_schema, libpq_dsn
from storage.schedules import ScheduleStore
from storage.sql import upgrade
from switchboard.scheduling import build_queued_firings, build_scheduler
from switchboard.services import Services, open_services
from switchboard.settings import Settings
from tests.conftest import _reset_postgres
from tests.fakes.chat import ScriptedChatModel

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(480)]

FIRINGS = 200
SPREAD = 20  # seconds the firings are spread over


@dataclass
class NamedPoster:
    """Records what it posted, per channel, under the name of the process it belongs to."""

    name: str
    posted: Counter[str] = field(default_factory=Counter)

    async def answer(
        self,
        channel: str,
        text: str,
        *,
        skill: str,
        run_id: str | None,
        dropped: DropNotice | None = None,
    ) -> Posted:
        self.posted[channel] += 1
        return Posted(channel=channel, ts=f"{time.time():.6f}")

    async def notice(self, channel: str, text: str, *, later: bool = False) -> Posted:
        return Posted(channel=channel, ts=f"{time.time():.6f}")


def _settings(url: str, keys: Keys) -> Settings:
    return Settings.from_env(
        {
            "DATABASE_URL": url,
            "SWITCHBOARD_REDIS_PREFIX": keys.prefix,
            "SWITCHBOARD_PII_KEY": "test-pii-key",
            "SWITCHBOARD_AUDIT_KEY": "test-audit-key-0123456789abcdef-0123",
        }
    )


@contextlib.asynccontextmanager
async def _services(url: str, keys: Keys, redis: Redis) -> AsyncIterator[Services]:
    model = ScriptedChatModel(default="All quiet today.")
    async with open_services(
        _settings(url, keys),
        model_factory=lambda _name: model,
        env={},
        redis=redis,
        model_retries=0,
        retry_initial_delay=0.01,
        max_concurrent_runs=64,
    ) as services:
        yield services


@contextlib.asynccontextmanager
async def _worker(
    services: Services, poster: NamedPoster, *, own_queue: bool = True
) -> AsyncIterator[QueuedFirings]:
    """A worker: its own Procrastinate worker over its own connection pool (the shared
    PostgreSQL of this machine cannot give every worker a full set of services)."""
    firings = build_queued_firings(services, client=None, poster=poster)
    queue = (
        RunQueue(database_url=services.settings.database_url, inbox=services.inbox, pool_size=3)
        if own_queue
        else services.queue
    )
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        if own_queue:
            await stack.enter_async_context(queue.opened())
        task = asyncio.create_task(
            queue.run_worker(
                Handlers(work={FIRE_KIND: firings.handle}),
                concurrency=32,
                drain_seconds=5,
                stop=stop,
                name=poster.name,
            )
        )
        try:
            yield firings
        finally:
            stop.set()
            await task


async def test_200_firings_in_a_minute_are_posted_once_each_by_the_workers(
    postgres_url: str, real_redis: Redis, keys: Keys
) -> None:
    await _reset_postgres(postgres_url)
    await upgrade(postgres_url)
    await ensure_queue_schema(libpq_dsn(postgres_url))
    leader_poster = NamedPoster("leader")
    one, two = NamedPoster("worker-1"), NamedPoster("worker-2")
    async with (
        _services(postgres_url, keys, real_redis) as leader_services,
        _worker(leader_services, one),
        _worker(leader_services, two),
    ):
        store = ScheduleStore(sessions=leader_services.sessions)
        now = datetime.now(UTC).replace(microsecond=0)
        first = now + timedelta(seconds=8)
        rows = [
            {
                "team_id": "T0",
                "skill": "ask",
                "input_text": "status?",
                "channel_id": f"C{i:04d}",
                # 200 firings spread over 20 s: ten a second, all within one minute
                "trigger": (
                    OnceTrigger(at=first + timedelta(seconds=i % SPREAD), tz="UTC").to_dict()
                ),
                "tz": "UTC",
                "owner": "cli",
                "created_at": now - timedelta(seconds=1),
                "updated_at": now,
            }
            for i in range(FIRINGS)
        ]
        await store.add_many(rows)
        scheduler = build_scheduler(
            leader_services,
            client=None,
            poster=leader_poster,
            config=SchedulerConfig(resync_interval=5.0, poll_interval=0.2),
            queued=True,
        )
        async with scheduler:
            await scheduler.wait_leader(timeout=30)
            deadline = time.monotonic() + 300  # generous: the machine is shared
            while time.monotonic() < deadline:
                if len(one.posted) + len(two.posted) >= FIRINGS:
                    break
                await asyncio.sleep(0.2)
            done_at = datetime.now(UTC)
            while time.monotonic() < deadline and await store.firings.count(status="ok") < FIRINGS:
                await asyncio.sleep(0.2)  # the last records close just after their post
            await asyncio.sleep(1.0)  # a late duplicate would show up here
            local = scheduler.local_runs
        statuses = {
            st: await store.firings.count(status=st)
            for st in ("running", "ok", "failed", "missed", "skipped")
        }
    posted = one.posted + two.posted
    late = (done_at - (first + timedelta(seconds=SPREAD - 1))).total_seconds()
    print(
        f"\nqueued firings: {FIRINGS} due in {SPREAD} s; "
        f"posted by worker-1={sum(one.posted.values())} "
        f"worker-2={sum(two.posted.values())} leader={sum(leader_poster.posted.values())} "
        f"(leader ran locally: {local}); channels posted={len(posted)} "
        f"twice={sum(1 for n in posted.values() if n > 1)}; runs {statuses}; "
        f"last posted {late:.1f} s after the last instant"
    )
    assert len(posted) == FIRINGS
    assert all(n == 1 for n in posted.values())
    assert not set(one.posted) & set(two.posted)
    assert sum(leader_poster.posted.values()) == 0 and local == 0
    assert one.posted and two.posted  # both workers took firings
    assert statuses["ok"] == FIRINGS and statuses["running"] == 0


async def test_a_firing_enqueued_twice_by_two_leaders_runs_once(
    postgres_url: str, real_redis: Redis, keys: Keys
) -> None:
    """A hand-over where the old and the new leader both enqueue the same started firing:
    the second enqueue is absorbed (same queueing lock while the first waits), and a job
    arriving after the firing finished finds its record closed. Posted once."""
    await _reset_postgres(postgres_url)
    await upgrade(postgres_url)
    await ensure_queue_schema(libpq_dsn(postgres_url))
    poster = NamedPoster("worker")
    async with _services(postgres_url, keys, real_redis) as services:
        store = ScheduleStore(sessions=services.sessions)
        now = datetime.now(UTC).replace(microsecond=0)
        row = await store.create(
            team_id="T0",
            skill="ask",
            input_text="status?",
            channel_id="C0ONE",
            trigger=OnceTrigger(at=now, tz="UTC").to_dict(),
            tz="UTC",
            owner="cli",
            created_at=now - timedelta(seconds=1),
            updated_at=now,
        )
        run = await store.firings.begin(row.id, now, started_at=now, fence=1, next_run_at=None)
        assert run is not None
        firings = build_queued_firings(services, client=None, poster=poster)
        assert await firings.dispatch(row, run)
        assert await firings.dispatch(row, run)  # the second leader's enqueue
        jobs = [j for j in await services.queue.jobs() if j.task == "switchboard.work"]
        waiting = len(jobs)
        async with _worker(services, poster):
            deadline = time.monotonic() + 30
            while not poster.posted and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert await firings.dispatch(row, run)  # a third, after it ran
            await asyncio.sleep(3.0)
        final = await store.firings.get(run.id)
    print(f"\ntwo leaders enqueue one firing: jobs waiting={waiting}; posts={dict(poster.posted)}")
    assert waiting == 1
    assert poster.posted == Counter({"C0ONE": 1})
    assert final is not None and final.status == "ok"
