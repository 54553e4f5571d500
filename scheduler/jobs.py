"""The leader's timers: one APScheduler job per enabled schedule, one per open stand-up.

:class:`JobTable` keeps the leader's copy of every enabled schedule (kept current by change
notifications and resyncs) and an APScheduler ``AsyncIOScheduler`` whose jobs wake the
firing code. It decides nothing about firings: the callbacks it is built with do.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger

from scheduler.manage import ScheduleManager
from scheduler.triggers import Trigger, TriggerError
from storage.schedules import Schedule, StandupSession

log = logging.getLogger(f"switchboard.{__name__}")


class _Fires(BaseTrigger):  # type: ignore[misc]
    """Our :class:`Trigger` as an APScheduler trigger.

    ``first`` is the first wake-up (``now`` when something is already due, so the firing
    code can run or record it). Afterwards the next firing strictly after the later of the
    last wake-up and now: a late wake-up never replays the firings it overslept — the
    firing code plans those from SQL instead.
    """

    def __init__(self, trigger: Trigger, first: datetime | None) -> None:
        self.trigger = trigger
        self.first = first

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is None:
            return self.first
        return self.trigger.next_fire(max(previous_fire_time, now))

    def __str__(self) -> str:
        return self.trigger.description()


class JobTable:
    """The leader's APScheduler and its copy of the schedules; see the module docstring.

    ``on_due(schedule_id)`` runs when a schedule's job wakes; ``on_run_requested(id, at)``
    when a reloaded row carries a "run now" request; ``on_close(session_id)`` when a
    stand-up's answer window ends.
    """

    def __init__(
        self,
        *,
        planner: ScheduleManager,
        clock: Callable[[], datetime],
        on_due: Callable[[str], Awaitable[None]],
        on_run_requested: Callable[[str, datetime], None],
        on_close: Callable[[str], Awaitable[None]],
    ) -> None:
        self._planner = planner
        self._clock = clock
        self._on_due = on_due
        self._on_run_requested = on_run_requested
        self._on_close = on_close
        self.aps: AsyncIOScheduler | None = None
        #: The leader's copy of each enabled schedule with a job.
        self.rows: dict[str, Schedule] = {}
        self._versions: dict[str, int] = {}

    def open(self) -> AsyncIOScheduler:
        """A fresh, not yet started APScheduler for a new term."""
        self._versions = {}
        self.rows = {}
        self.aps = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 8},
        )
        return self.aps

    def close(self, aps: AsyncIOScheduler) -> None:
        self.aps = None
        with contextlib.suppress(Exception):
            aps.shutdown(wait=False)

    def ids(self) -> frozenset[str]:
        """Ids of the schedules with a timer (empty when not leading)."""
        return frozenset(self._versions) if self.aps is not None else frozenset()

    def versions(self) -> dict[str, int]:
        return dict(self._versions)

    def next_wakeups(self, earliest: datetime, horizon: datetime) -> list[tuple[str, datetime]]:
        """``(schedule id, instant)`` of every job waking between the two instants."""
        aps = self.aps
        if aps is None:
            return []
        found: list[tuple[str, datetime]] = []
        for job in aps.get_jobs():
            at: datetime | None = job.next_run_time
            if at is not None and earliest <= at <= horizon:
                found.append((job.id, at))
        return found

    def apply(self, row: Schedule) -> None:
        """Add, replace or remove the job of one schedule (and pass on a "run now")."""
        aps = self.aps
        if aps is None:
            return
        if row.run_requested_at is not None:
            self._on_run_requested(row.id, row.run_requested_at)
        if not row.enabled:
            self.remove(row.id)
            return
        if self._versions.get(row.id) == row.version:
            return
        self.rows[row.id] = row
        try:
            trigger = self._planner.trigger(row)
        except TriggerError as exc:
            log.error("schedule %s has an unreadable trigger: %s", row.id, exc)
            self.remove(row.id)
            return
        now = self._clock()
        plan = self._planner.plan(row, now, trigger=trigger)
        first = now if (plan.run is not None or plan.missed) else plan.next
        if first is None:
            self.remove(row.id)
            return
        aps.add_job(
            self._on_due,
            trigger=_Fires(trigger, first),
            args=(row.id,),
            id=row.id,
            name=f"{row.skill}:{row.id}",
            replace_existing=True,
        )
        self._versions[row.id] = row.version

    def advanced(self, row: Schedule, **changes: Any) -> Schedule:
        """``row`` after a firing moved it; the leader's copy follows (records are
        frozen), unless a reload replaced that copy meanwhile."""
        moved = replace(row, **changes)
        if self.rows.get(row.id) is row:
            self.rows[row.id] = moved
        return moved

    def forget(self, schedule_id: str) -> None:
        """Drop the copy of a row that changed under us: it is re-read next time."""
        self.rows.pop(schedule_id, None)

    def remove(self, schedule_id: str) -> None:
        self._versions.pop(schedule_id, None)
        self.rows.pop(schedule_id, None)
        if self.aps is not None:
            with contextlib.suppress(Exception):
                self.aps.remove_job(schedule_id)

    def add_close_job(self, session: StandupSession) -> None:
        if self.aps is None:
            return
        self.aps.add_job(
            self._on_close,
            trigger=DateTrigger(run_date=session.closes_at, timezone=UTC),
            args=(session.id,),
            id=f"standup-close:{session.id}",
            replace_existing=True,
        )
