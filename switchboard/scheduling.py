"""The one scheduler builder: the schedule manager and the leader-elected scheduler.

``switchboard serve``/``socket``/``sandbox`` run the scheduler beside the listeners,
``switchboard scheduler`` runs it alone, ``switchboard schedules …`` only needs the manager;
all of them build those parts here, from the same settings.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.access import SlackConversationAccess
from bot.delivery import Deliveries
from bot.directory import Directory
from bot.queueing import PayloadSealer
from bot.schedules import SlackPoster
from bot.slack.reader import WebApiSlackReader
from bot.views.schedule_words import SlackScheduleWords
from bot.views.text import LinkPolicy
from scheduler.calendar import BusinessCalendar
from scheduler.feed import ChangeFeed
from scheduler.manage import ScheduleManager
from scheduler.ports import ActorResolver, GroupMembers, Maintenance, Poster, ScheduleWords
from scheduler.queued import QueuedFirings
from scheduler.runner import Fence, FiringRunner, OnStandupOpened
from scheduler.service import SchedulerConfig, SchedulerService
from scheduler.standup import StandupCollector
from scheduler.triggers import MIN_INTERVAL
from skills.catalog import load_registry
from skills.context import ConversationAccess
from skills.registry import SkillRegistry
from storage.keys import Keys
from storage.redis import create_redis
from storage.schedules import FiringResult, Schedule, ScheduleRun, ScheduleStore
from storage.sql import create_engine, session_factory, upgrade
from switchboard.health import leader_gauge
from switchboard.services import Services
from switchboard.settings import Settings

__all__ = [
    "build_manager",
    "build_queued_firings",
    "build_scheduler",
    "business_calendar",
    "open_manager",
]


def business_calendar(settings: Settings) -> BusinessCalendar:
    """``every business day`` as configured (SWITCHBOARD_WEEKEND, SWITCHBOARD_HOLIDAYS)."""
    return BusinessCalendar.from_config(weekend=settings.weekend, holidays=settings.holidays)


def build_manager(
    *,
    settings: Settings,
    store: ScheduleStore,
    feed: ChangeFeed,
    registry: SkillRegistry,
    min_interval: timedelta = MIN_INTERVAL,
    calendar: BusinessCalendar | None = None,
    clock: Callable[[], datetime] | None = None,
) -> ScheduleManager:
    """What creates, changes and lists schedules (Slack, the CLI, the scheduler)."""
    return ScheduleManager(
        store=store,
        feed=feed,
        skills=lambda: [skill.name for skill in registry],
        calendar=calendar or business_calendar(settings),
        min_interval=min_interval,
        **_timed(clock),
    )


def build_scheduler(
    services: Services,
    *,
    client: AsyncWebClient | None,
    poster: Poster | None = None,
    config: SchedulerConfig | None = None,
    directory: Directory | None = None,
    access: ConversationAccess | None = None,
    actor_for: ActorResolver | None = None,
    group_members: GroupMembers | None = None,
    calendar: BusinessCalendar | None = None,
    max_failures: int | None = None,
    clock: Callable[[], datetime] | None = None,
    queued: bool = False,
    maintenance: Sequence[Maintenance] = (),
) -> SchedulerService:
    """The scheduler service of this process, posting through ``client``.

    The business calendar, the auto-pause limit (SWITCHBOARD_SCHEDULE_MAX_FAILURES) and
    the link policy come from the settings; the ``switchboard_scheduler_leader`` gauge of
    ``services.metrics`` follows this replica's leadership. With a Slack ``client``,
    firings read Slack as the schedule's owner and check the owner's memberships:
    ``access`` answers who is in which conversation (default: asked of Slack every time,
    uncached, since this process may not receive membership events). ``client=None``
    leaves Slack out (a ``poster`` is then required): what the scheduler tests and
    benchmark measure. ``maintenance`` are the periodic jobs the leader runs (the approval
    expiry sweep, :func:`switchboard.serve.approval_sweep`). The other arguments replace
    single parts (tests).
    """
    config = config or SchedulerConfig()
    parts = _firing_parts(
        services,
        client=client,
        poster=poster,
        # a post Slack refuses is queued only where workers run the queue
        defer_posts=queued,
        min_interval=config.min_interval,
        directory=directory,
        access=access,
        actor_for=actor_for,
        group_members=group_members,
        calendar=calendar,
        max_failures=max_failures,
        clock=clock,
    )
    dispatch = None
    if queued:
        dispatch = QueuedFirings(
            queue=services.queue, store=parts.store, runner=parts.runner, feed=parts.feed
        ).dispatch
    return SchedulerService(
        store=parts.store,
        locks=services.locks,
        feed=parts.feed,
        runner=parts.runner,
        manager=parts.manager,
        collector=StandupCollector(
            store=parts.store, poster=parts.poster, words=parts.words, **_timed(clock)
        ),
        calendar=parts.manager.calendar,
        config=config,
        dispatch=dispatch,
        on_leadership=leader_gauge(services.metrics),
        maintenance=maintenance,
        **_timed(clock),
    )


def build_queued_firings(
    services: Services,
    *,
    client: AsyncWebClient | None,
    poster: Poster | None = None,
    actor_for: ActorResolver | None = None,
    group_members: GroupMembers | None = None,
    clock: Callable[[], datetime] | None = None,
) -> QueuedFirings:
    """The worker's half of queued firings (its handler runs ``schedule.fire`` jobs), with
    the same runner, checks and poster the scheduler would use in-process."""
    parts = _firing_parts(
        services,
        client=client,
        poster=poster,
        defer_posts=True,
        min_interval=MIN_INTERVAL,
        actor_for=actor_for,
        group_members=group_members,
        clock=clock,
    )
    return QueuedFirings(
        queue=services.queue, store=parts.store, runner=parts.runner, feed=parts.feed
    )


@dataclass(frozen=True, slots=True)
class _FiringParts:
    store: ScheduleStore
    feed: ChangeFeed
    manager: ScheduleManager
    runner: FiringRunner
    poster: Poster
    words: ScheduleWords


def _firing_parts(
    services: Services,
    *,
    client: AsyncWebClient | None,
    poster: Poster | None,
    defer_posts: bool,
    min_interval: timedelta,
    directory: Directory | None = None,
    access: ConversationAccess | None = None,
    actor_for: ActorResolver | None = None,
    group_members: GroupMembers | None = None,
    calendar: BusinessCalendar | None = None,
    max_failures: int | None = None,
    clock: Callable[[], datetime] | None = None,
) -> _FiringParts:
    settings = services.settings
    store = ScheduleStore(sessions=services.sessions)
    feed = ChangeFeed(redis=services.redis, keys=services.keys)
    manager = build_manager(
        settings=settings,
        store=store,
        feed=feed,
        registry=services.registry,
        min_interval=min_interval,
        calendar=calendar,
        clock=clock,
    )
    slack: dict[str, Any] = {}
    if client is not None:
        reader = WebApiSlackReader(client=client)
        directory = directory or Directory(reader=reader, registry=services.registry)
        poster = poster or SlackPoster(
            client=client,
            links=LinkPolicy.from_domains(settings.link_domains),
            # an answer Slack rate-limits is posted later by a worker (bot.delivery)
            deliveries=Deliveries(
                queue=services.queue,
                client=client,
                sealer=PayloadSealer(key=services.runtime.config.pii_key),
                metrics=services.metrics,
            )
            if defer_posts
            else None,
        )
        slack = {
            "slack": reader,
            "actor_for": actor_for or directory.actor,
            "group_members": group_members or reader.usergroup_members,
            "access": access or SlackConversationAccess(client=client, ttl=0.0),
        }
    else:
        slack = {"actor_for": actor_for, "group_members": group_members, "access": access}
    if poster is None:
        raise ValueError("a scheduler without a Slack client needs a poster")
    words = SlackScheduleWords()
    runner = _MeasuredRunner(
        lateness=services.metrics.observe_lateness,
        store=store,
        runtime=services.runtime,
        poster=poster,
        words=words,
        max_failures=settings.schedule_max_failures if max_failures is None else max_failures,
        **slack,
        **_timed(clock),
    )
    return _FiringParts(
        store=store, feed=feed, manager=manager, runner=runner, poster=poster, words=words
    )


class _MeasuredRunner(FiringRunner):
    """The firing runner, reporting how late each firing starts
    (``switchboard_schedule_lateness_seconds``): the scheduler's health in one number."""

    def __init__(self, *, lateness: Callable[[float], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lateness = lateness

    async def execute(
        self,
        schedule: Schedule,
        run: ScheduleRun,
        *,
        on_standup_opened: OnStandupOpened | None = None,
        fence: Fence | None = None,
    ) -> FiringResult:
        if run.started_at is not None:
            self._lateness((run.started_at - run.scheduled_for).total_seconds())
        return await super().execute(
            schedule, run, on_standup_opened=on_standup_opened, fence=fence
        )


def _timed(clock: Callable[[], datetime] | None) -> dict[str, Any]:
    return {} if clock is None else {"clock": clock}


@contextlib.asynccontextmanager
async def open_manager(settings: Settings) -> AsyncIterator[ScheduleManager]:
    """A schedule manager over the deployment's SQL and Redis, without a runtime
    (``switchboard schedules …``); the embedded SQLite database migrates itself."""
    if settings.uses_embedded_sql:
        await upgrade(settings.database_url)
    registry = load_registry(settings.skills_dirs, env=os.environ).registry
    engine = create_engine(settings.database_url)
    redis = create_redis(settings.redis_url)
    try:
        yield build_manager(
            settings=settings,
            store=ScheduleStore(sessions=session_factory(engine)),
            feed=ChangeFeed(redis=redis, keys=Keys(prefix=settings.redis_prefix)),
            registry=registry,
        )
    finally:
        await redis.aclose()
        await engine.dispose()
