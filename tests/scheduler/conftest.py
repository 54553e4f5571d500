"""Scheduler fixtures: a store on each SQL backend, and in-process scheduler replicas.

A replica is the real :class:`SchedulerService` over real services (runtime, SQL, Redis),
built by the composition root's one builder (:func:`switchboard.scheduling.build_scheduler`),
with a scripted zero-latency model and a :class:`RecordingPoster` — or, for the Slack
tests, the bot's :class:`~bot.schedules.SlackPoster` against the fake Slack Web API.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from scheduler.calendar import BusinessCalendar
from scheduler.manage import ScheduleManager
from scheduler.ports import (
    ActorResolver,
    DropNotice,
    GroupMembers,
    Maintenance,
    Posted,
    Poster,
    PostFailed,
)
from scheduler.service import SchedulerConfig, SchedulerService
from storage.keys import Keys
from storage.schedules import ScheduleStore
from storage.sql import session_factory
from switchboard.scheduling import build_scheduler
from switchboard.services import Services, open_services
from switchboard.settings import Settings
from tests.conftest import Backend
from tests.fakes.chat import ScriptedChatModel

FAST = SchedulerConfig(
    lease_ttl=timedelta(seconds=1.5),
    poll_interval=0.2,
    resync_interval=2.0,
    min_interval=timedelta(seconds=1),
)


@pytest.fixture
def store(engine: AsyncEngine) -> ScheduleStore:
    return ScheduleStore(sessions=session_factory(engine))


@dataclass
class RecordingPoster:
    """A Poster that remembers every message; ``fail_answers`` makes answers fail."""

    answers: list[tuple[str, str]] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)
    fail_answers: str | None = None
    times: list[float] = field(default_factory=list)

    async def answer(
        self,
        channel: str,
        text: str,
        *,
        skill: str,
        run_id: str | None,
        dropped: DropNotice | None = None,
    ) -> Posted:
        if self.fail_answers:
            raise PostFailed(self.fail_answers)
        self.answers.append((channel, text))
        self.times.append(time.time())
        return Posted(channel=channel, ts=f"{time.time():.6f}")

    async def notice(self, channel: str, text: str, *, later: bool = False) -> Posted:
        self.notices.append((channel, text))
        dm = f"D{channel[1:]}" if channel.startswith("U") else channel
        return Posted(channel=dm, ts=f"{time.time():.6f}")

    def dms(self, user: str) -> list[str]:
        return [text for channel, text in self.notices if channel == user]


@dataclass
class Replica:
    services: Services
    service: SchedulerService
    poster: Poster

    @property
    def manager(self) -> ScheduleManager:
        return self.service.manager

    @property
    def store(self) -> ScheduleStore:
        return self.service.store


@dataclass
class ReplicaFactory:
    database_url: str
    redis: Redis
    keys: Keys
    stack: contextlib.AsyncExitStack

    async def __call__(
        self,
        *,
        model: BaseChatModel | None = None,
        poster: Poster | None = None,
        config: SchedulerConfig = FAST,
        max_failures: int = 5,
        actor_for: ActorResolver | None = None,
        group_members: GroupMembers | None = None,
        calendar: BusinessCalendar | None = None,
        start: bool = True,
        clock: Callable[[], Any] | None = None,
        maintenance: Sequence[Maintenance] = (),
    ) -> Replica:
        settings = Settings.from_env(
            {
                "DATABASE_URL": self.database_url,
                "SWITCHBOARD_REDIS_PREFIX": self.keys.prefix,
                "SWITCHBOARD_PII_KEY": "test-pii-key",
                "SWITCHBOARD_AUDIT_KEY": "test-audit-key-0123456789abcdef-0123",
            }
        )
        chat = model or ScriptedChatModel(default="All quiet today.")
        services = await self.stack.enter_async_context(
            open_services(
                settings,
                model_factory=lambda _name: chat,
                env={},
                redis=self.redis,
                model_retries=0,
                retry_initial_delay=0.01,
            )
        )
        poster = poster or RecordingPoster()
        service = build_scheduler(
            services,
            client=None,
            poster=poster,
            config=config,
            actor_for=actor_for,
            group_members=group_members,
            calendar=calendar,
            max_failures=max_failures,
            clock=clock,
            maintenance=maintenance,
        )
        if start:
            await service.start()
            self.stack.push_async_callback(service.stop)
        return Replica(services=services, service=service, poster=poster)


@pytest.fixture
async def make_replica(backend: Backend, keys: Keys) -> AsyncIterator[ReplicaFactory]:
    """Scheduler replicas sharing one database and one Redis (embedded, then real)."""
    async with contextlib.AsyncExitStack() as stack:
        yield ReplicaFactory(
            database_url=backend.database_url, redis=backend.redis, keys=keys, stack=stack
        )


async def eventually(
    check: Callable[[], Any], *, timeout: float = 5.0, step: float = 0.02
) -> float:
    """Poll ``check`` (sync or async) until truthy; return the seconds it took."""
    started = time.monotonic()
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(step)
