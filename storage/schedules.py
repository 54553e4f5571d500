"""Schedules, their run records and stand-up state, with transactional state changes.

Exactly-once support lives here as much as in Redis: a firing is recorded by inserting a
``schedule_runs`` row whose (schedule, scheduled time) key is unique, in the same
transaction that advances the schedule's ``last_fire_at``. Whoever inserts the row runs the
firing; a second leader (after a hand-over, or during a split) gets an integrity error and
skips. Failure streaks and auto-pause are one ``UPDATE`` per finished firing, so the owner
is told once per streak however many replicas are involved.

Firings can also be recorded a few seconds *ahead* of their instant, in batches
(:meth:`ScheduleStore.preclaim_firings`): the row is inserted with ``status='running'`` and
no ``started_at``. Such a *pending* row is started at the instant by one compare-and-set
``UPDATE`` (:meth:`ScheduleStore.start_firings`) that also re-checks that the schedule is
still enabled, so exactly one process starts it and a pause in between makes it ``skipped``.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage._tx import retrying
from storage.models import Schedule, ScheduleRun, StandupAnswer, StandupSession, utcnow

T = TypeVar("T")

RunStatus = Literal["running", "ok", "failed", "missed", "skipped"]
FINAL_STATUSES = frozenset({"ok", "failed", "missed", "skipped"})


#: How long after a stand-up opens a reply may arrive before its prompt is recorded.
PROMPTING_WINDOW = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class FiringResult:
    """What finishing a firing did to its schedule's failure streak.

    ``notify`` is True for the first failure of a streak (tell the owner once);
    ``paused`` is True when this failure reached the limit and paused the schedule.
    """

    schedule: Schedule | None
    streak: int
    notify: bool
    paused: bool


@dataclass(frozen=True, slots=True)
class PlannedFiring:
    """A firing to record ahead of its instant: the schedule's state before and after.

    ``previous_fire_at`` is the schedule's ``last_fire_at`` when it was planned; recording
    only succeeds if it is still older than ``scheduled_for``, and releasing the firing
    (:meth:`ScheduleStore.release_firings`) puts it back.
    """

    schedule_id: str
    scheduled_for: datetime
    next_run_at: datetime | None
    previous_fire_at: datetime | None


@dataclass(frozen=True, slots=True)
class StandupReply:
    """A captured stand-up answer: the session it went to; ``first`` for a first answer."""

    session_id: str
    user_id: str
    first: bool


class ScheduleStore:
    """All SQL about schedules. Rows come back detached (``expire_on_commit=False``)."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def _retrying(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        return await retrying(self._sessions, work)

    # -- schedules ------------------------------------------------------------------------

    async def create(
        self,
        *,
        team_id: str,
        skill: str,
        channel_id: str,
        trigger: Mapping[str, Any],
        tz: str,
        owner: str,
        kind: str = "skill",
        input_text: str = "",
        grace_seconds: int = 600,
        options: Mapping[str, Any] | None = None,
        enabled: bool = True,
        created_at: datetime | None = None,
        updated_at: datetime | None = None,
        next_run_at: datetime | None = None,
        last_fire_at: datetime | None = None,
    ) -> Schedule:
        """Insert a schedule. ``trigger`` is ``Trigger.to_dict()`` and ``options`` the
        stand-up options: their JSON columns are written here, nowhere else."""
        created = created_at or utcnow()
        row = Schedule(
            team_id=team_id,
            kind=kind,
            skill=skill,
            input_text=input_text,
            channel_id=channel_id,
            trigger_json=dumps(dict(trigger)),
            tz=tz,
            grace_seconds=grace_seconds,
            options_json=dumps(dict(options or {})),
            owner=owner,
            enabled=enabled,
            created_at=created,
            updated_at=updated_at or created,
            next_run_at=next_run_at,
            last_fire_at=last_fire_at,
        )

        async def work(session: AsyncSession) -> Schedule:
            session.add(row)
            return row

        return await self._retrying(work)

    async def add_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """Bulk insert (benchmarks and imports)."""

        async def work(session: AsyncSession) -> None:
            session.add_all([Schedule(**fields) for fields in rows])

        await self._retrying(work)

    async def get(self, schedule_id: str) -> Schedule | None:
        async with self._sessions() as session:
            return await session.get(Schedule, schedule_id)

    async def find(self, prefix: str) -> Schedule | None:
        """A schedule by id or by an unambiguous id prefix (operators type short ids)."""
        found = await self.get(prefix)
        if found is not None or len(prefix) < 4:
            return found
        async with self._sessions() as session:
            rows = list(
                await session.scalars(
                    select(Schedule).where(Schedule.id.startswith(prefix, autoescape=True)).limit(2)
                )
            )
        return rows[0] if len(rows) == 1 else None

    async def list_schedules(
        self,
        *,
        channel: str | None = None,
        owner: str | None = None,
        enabled: bool | None = None,
        limit: int | None = None,
    ) -> list[Schedule]:
        """Schedules, oldest first, filtered by channel, owner and state."""
        query = select(Schedule).order_by(Schedule.created_at, Schedule.id)
        if channel is not None:
            query = query.where(Schedule.channel_id == channel)
        if owner is not None:
            query = query.where(Schedule.owner == owner)
        if enabled is not None:
            query = query.where(Schedule.enabled == enabled)
        if limit is not None:
            query = query.limit(limit)
        async with self._sessions() as session:
            return list(await session.scalars(query))

    async def versions(self) -> dict[str, int]:
        """``{id: version}`` of enabled schedules: what a resync compares against."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(Schedule.id, Schedule.version).where(Schedule.enabled.is_(True))
            )
            return {str(row[0]): int(row[1]) for row in rows}

    async def set_enabled(
        self,
        schedule_id: str,
        enabled: bool,
        *,
        now: datetime,
        reason: str | None = None,
        next_run_at: datetime | None = None,
    ) -> Schedule | None:
        """Pause or resume. Resuming restarts the count at ``now`` (runs that fell in the
        pause are not missed, they were paused) and clears the failure streak."""

        async def work(session: AsyncSession) -> Schedule | None:
            row = await session.get(Schedule, schedule_id, with_for_update=True)
            if row is None:
                return None
            if row.enabled == enabled:
                return row
            row.enabled = enabled
            row.updated_at = now
            row.version += 1
            row.next_run_at = next_run_at if enabled else None
            if enabled:
                row.paused_reason = None
                row.failure_streak = 0
                row.failure_notified = False
                row.last_fire_at = (
                    now if row.last_fire_at is None or row.last_fire_at < now else row.last_fire_at
                )
            else:
                row.paused_reason = reason
            return row

        return await self._retrying(work)

    async def delete(self, schedule_id: str) -> bool:
        """Delete a schedule with its runs and stand-ups; False if it did not exist."""

        async def work(session: AsyncSession) -> bool:
            sessions = select(StandupSession.id).where(StandupSession.schedule_id == schedule_id)
            await session.execute(
                delete(StandupAnswer).where(StandupAnswer.session_id.in_(sessions))
            )
            await session.execute(
                delete(StandupSession).where(StandupSession.schedule_id == schedule_id)
            )
            await session.execute(delete(ScheduleRun).where(ScheduleRun.schedule_id == schedule_id))
            result = await session.execute(delete(Schedule).where(Schedule.id == schedule_id))
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

        return await self._retrying(work)

    async def request_run(self, schedule_id: str, at: datetime) -> bool:
        """Ask the leader to run the schedule now (kept until the leader takes it)."""

        async def work(session: AsyncSession) -> bool:
            result = await session.execute(
                update(Schedule)
                .where(Schedule.id == schedule_id)
                .values(run_requested_at=at, version=Schedule.version + 1, updated_at=at)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

        return await self._retrying(work)

    async def take_run_request(self, schedule_id: str, at: datetime) -> bool:
        """Clear the run request made at ``at``; True for the one caller that cleared it."""

        async def work(session: AsyncSession) -> bool:
            result = await session.execute(
                update(Schedule)
                .where(Schedule.id == schedule_id, Schedule.run_requested_at == at)
                .values(run_requested_at=None)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

        return await self._retrying(work)

    # -- firings --------------------------------------------------------------------------

    async def begin_firing(
        self,
        schedule_id: str,
        scheduled_for: datetime,
        *,
        started_at: datetime,
        kind: str = "scheduled",
        fence: int | None = None,
        next_run_at: datetime | None = None,
        missed: Iterable[datetime] = (),
        status: RunStatus = "running",
        error: str | None = None,
    ) -> ScheduleRun | None:
        """Record a firing (and the firings it makes ``missed``) and advance the schedule.

        Returns the new run row, or None when this firing was already recorded by someone
        else — then the caller must not run it.
        """
        missed = sorted(missed)

        async def work(session: AsyncSession) -> ScheduleRun | None:
            # Core statements, not the ORM: this is the hot path when many schedules fire
            # in the same second. The UPDATE re-checks what the leader planned with.
            values: dict[str, Any] = {"next_run_at": next_run_at}
            if status != "running":
                values["last_status"] = status
            query = update(Schedule).where(Schedule.id == schedule_id)
            if kind == "scheduled":
                values["last_fire_at"] = scheduled_for
                query = query.where(
                    Schedule.enabled.is_(True),
                    or_(Schedule.last_fire_at.is_(None), Schedule.last_fire_at < scheduled_for),
                )
            else:
                values.pop("next_run_at")
                values["updated_at"] = Schedule.updated_at
            result = await session.execute(
                query.values(**values).execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            if missed:
                await session.execute(
                    insert(ScheduleRun),
                    [
                        {
                            "schedule_id": schedule_id,
                            "scheduled_for": at,
                            "kind": "scheduled",
                            "status": "missed",
                            "finished_at": started_at,
                            "error": "the scheduler was not running within the grace window",
                        }
                        for at in missed
                    ],
                )
            fields: dict[str, Any] = {
                "schedule_id": schedule_id,
                "scheduled_for": scheduled_for,
                "kind": kind,
                "status": status,
                "started_at": started_at,
                "finished_at": None if status == "running" else started_at,
                "error": error,
                "fence": fence,
            }
            run_id = await session.scalar(
                insert(ScheduleRun).values(**fields).returning(ScheduleRun.id)
            )
            return ScheduleRun(id=run_id, **fields)

        try:
            return await self._retrying(work)
        except IntegrityError:
            return None

    async def preclaim_firings(
        self, firings: Sequence[PlannedFiring], *, fence: int | None
    ) -> dict[str, ScheduleRun]:
        """Record upcoming firings before their instant, in one transaction.

        Each schedule is advanced as :meth:`begin_firing` would (only if it is enabled and
        has not fired at or after that instant); the run rows are inserted as *pending*
        (``status='running'``, no ``started_at``) with one multi-row ``INSERT``. Returns the
        recorded runs by schedule id; schedules missing from the result must not be run
        from this record. Raises :class:`IntegrityError` when one of the firings was
        already recorded (nothing is kept then).
        """
        if not firings:
            return {}

        async def work(session: AsyncSession) -> dict[str, ScheduleRun]:
            kept: list[PlannedFiring] = []
            for firing in firings:
                result = await session.execute(
                    update(Schedule)
                    .where(
                        Schedule.id == firing.schedule_id,
                        Schedule.enabled.is_(True),
                        or_(
                            Schedule.last_fire_at.is_(None),
                            Schedule.last_fire_at < firing.scheduled_for,
                        ),
                    )
                    .values(last_fire_at=firing.scheduled_for, next_run_at=firing.next_run_at)
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    kept.append(firing)
            if not kept:
                return {}
            rows = [
                {
                    "schedule_id": firing.schedule_id,
                    "scheduled_for": firing.scheduled_for,
                    "kind": "scheduled",
                    "status": "running",
                    "started_at": None,
                    "finished_at": None,
                    "error": None,
                    "fence": fence,
                }
                for firing in kept
            ]
            ids = (
                await session.scalars(
                    insert(ScheduleRun).returning(ScheduleRun.id, sort_by_parameter_order=True),
                    rows,
                )
            ).all()
            return {
                firing.schedule_id: ScheduleRun(id=run_id, **fields)
                for run_id, firing, fields in zip(ids, kept, rows, strict=True)
            }

        return await self._retrying(work)

    async def start_firings(
        self,
        run_ids: Sequence[int],
        *,
        started_at: datetime,
        fence: int | None,
        skip: dict[int, str] | None = None,
    ) -> builtins.list[int]:
        """Start pending firings at their instant; returns the ids this call started.

        One compare-and-set ``UPDATE`` sets ``started_at`` (and the starter's fence) on the
        runs in ``run_ids`` that are still pending and whose schedule is still enabled, so
        of several processes trying, exactly one starts each run. Pending runs whose
        schedule was paused meanwhile are deleted — a paused schedule leaves no record of
        the firing, as if it had not been recorded ahead — and those in ``skip``
        (id → reason) are closed as ``skipped``. Runs already started, or gone with their
        deleted schedule, are left alone.
        """
        skip = skip or {}
        wanted = [run_id for run_id in run_ids if run_id not in skip]

        def pending(ids: Sequence[int]) -> tuple[Any, ...]:
            return (
                ScheduleRun.id.in_(list(ids)),
                ScheduleRun.status == "running",
                ScheduleRun.started_at.is_(None),
            )

        async def work(session: AsyncSession) -> builtins.list[int]:
            enabled = select(Schedule.id).where(Schedule.enabled.is_(True)).scalar_subquery()
            started: builtins.list[int] = []
            if wanted:
                started = list(
                    await session.scalars(
                        update(ScheduleRun)
                        .where(*pending(wanted), ScheduleRun.schedule_id.in_(enabled))
                        .values(started_at=started_at, fence=fence)
                        .returning(ScheduleRun.id)
                        .execution_options(synchronize_session=False)
                    )
                )
            paused = [run_id for run_id in wanted if run_id not in started]
            if paused:
                await session.execute(
                    delete(ScheduleRun)
                    .where(*pending(paused), ScheduleRun.schedule_id.not_in(enabled))
                    .execution_options(synchronize_session=False)
                )
            for reason in set(skip.values()):
                ids = [run_id for run_id, why in skip.items() if why == reason]
                skipped = list(
                    await session.scalars(
                        update(ScheduleRun)
                        .where(*pending(ids))
                        .values(status="skipped", finished_at=started_at, error=reason)
                        .returning(ScheduleRun.schedule_id)
                        .execution_options(synchronize_session=False)
                    )
                )
                if skipped:
                    await session.execute(
                        update(Schedule)
                        .where(Schedule.id.in_(skipped))
                        .values(last_status="skipped")
                        .execution_options(synchronize_session=False)
                    )
            return started

        return await self._retrying(work)

    async def miss_firings(self, run_ids: Sequence[int], *, now: datetime) -> int:
        """Close pending firings found too late to run (beyond grace) as ``missed``."""
        if not run_ids:
            return 0

        async def work(session: AsyncSession) -> int:
            result = await session.execute(
                update(ScheduleRun)
                .where(
                    ScheduleRun.id.in_(list(run_ids)),
                    ScheduleRun.status == "running",
                    ScheduleRun.started_at.is_(None),
                )
                .values(
                    status="missed",
                    finished_at=now,
                    error="the scheduler was not running within the grace window",
                )
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

        return await self._retrying(work)

    async def release_firings(self, firings: Sequence[tuple[int, PlannedFiring]]) -> set[int]:
        """Undo pending firings that were never started (a leader stepping down cleanly).

        Deletes each pending run and puts its schedule's ``last_fire_at`` and
        ``next_run_at`` back, so the next leader plans that firing as if it had never been
        recorded. Returns the ids released; a run already started is left alone.
        """
        if not firings:
            return set()

        async def work(session: AsyncSession) -> set[int]:
            released: set[int] = set()
            for run_id, firing in firings:
                result = await session.execute(
                    delete(ScheduleRun)
                    .where(
                        ScheduleRun.id == run_id,
                        ScheduleRun.status == "running",
                        ScheduleRun.started_at.is_(None),
                    )
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                released.add(run_id)
                await session.execute(
                    update(Schedule)
                    .where(
                        Schedule.id == firing.schedule_id,
                        Schedule.last_fire_at == firing.scheduled_for,
                    )
                    .values(last_fire_at=firing.previous_fire_at, next_run_at=firing.scheduled_for)
                    .execution_options(synchronize_session=False)
                )
            return released

        return await self._retrying(work)

    async def pending_firings(self) -> builtins.list[ScheduleRun]:
        """Scheduled runs recorded ahead of time and not started yet, oldest first."""
        query = (
            select(ScheduleRun)
            .where(
                ScheduleRun.status == "running",
                ScheduleRun.started_at.is_(None),
                ScheduleRun.kind == "scheduled",
            )
            .order_by(ScheduleRun.scheduled_for, ScheduleRun.id)
        )
        async with self._sessions() as session:
            return list(await session.scalars(query))

    async def record_missed(
        self,
        schedule_id: str,
        missed: Sequence[datetime],
        *,
        now: datetime,
        next_run_at: datetime | None,
    ) -> int:
        """Record firings that were too late to run; returns how many were new."""
        if not missed:
            return 0

        async def work(session: AsyncSession) -> int:
            schedule = await session.get(Schedule, schedule_id, with_for_update=True)
            if schedule is None:
                return 0
            known = set(
                await session.scalars(
                    select(ScheduleRun.scheduled_for).where(
                        ScheduleRun.schedule_id == schedule_id,
                        ScheduleRun.scheduled_for.in_(list(missed)),
                    )
                )
            )
            fresh = [at for at in missed if at not in known]
            for at in fresh:
                session.add(
                    ScheduleRun(
                        schedule_id=schedule_id,
                        scheduled_for=at,
                        status="missed",
                        finished_at=now,
                        error="the scheduler was not running within the grace window",
                    )
                )
            latest = max(missed)
            if schedule.last_fire_at is None or schedule.last_fire_at < latest:
                schedule.last_fire_at = latest
            schedule.last_status = "missed"
            schedule.next_run_at = next_run_at
            return len(fresh)

        try:
            return await self._retrying(work)
        except IntegrityError:
            return 0

    async def finish_firing(
        self,
        run_id: int,
        *,
        status: Literal["ok", "failed"],
        finished_at: datetime,
        error: str | None = None,
        message_ts: str | None = None,
        skill_run_id: str | None = None,
        max_failures: int = 5,
        pause_reason: str | None = None,
    ) -> FiringResult:
        """Close a run and update the schedule's streak; may pause it (see FiringResult)."""

        async def work(session: AsyncSession) -> FiringResult:
            run = await session.get(ScheduleRun, run_id)
            if run is None:
                return FiringResult(None, 0, False, False)
            run.status = status
            run.finished_at = finished_at
            run.error = error
            run.message_ts = message_ts
            run.run_id = skill_run_id
            schedule = await session.get(Schedule, run.schedule_id, with_for_update=True)
            if schedule is None:
                return FiringResult(None, 0, False, False)
            schedule.last_status = status
            if status == "ok":
                schedule.failure_streak = 0
                schedule.failure_notified = False
                return FiringResult(schedule, 0, False, False)
            schedule.failure_streak += 1
            notify = not schedule.failure_notified
            schedule.failure_notified = True
            paused = schedule.enabled and schedule.failure_streak >= max_failures
            if paused:
                schedule.enabled = False
                schedule.paused_reason = pause_reason or (
                    f"paused after {schedule.failure_streak} failures in a row"
                )
                schedule.next_run_at = None
                schedule.version += 1
                schedule.updated_at = finished_at
            return FiringResult(schedule, schedule.failure_streak, notify, paused)

        return await self._retrying(work)

    async def runs(self, schedule_id: str, *, limit: int = 50) -> builtins.list[ScheduleRun]:
        """The latest runs of a schedule, newest first."""
        async with self._sessions() as session:
            return list(
                await session.scalars(
                    select(ScheduleRun)
                    .where(ScheduleRun.schedule_id == schedule_id)
                    .order_by(ScheduleRun.scheduled_for.desc(), ScheduleRun.id.desc())
                    .limit(limit)
                )
            )

    async def count_runs(self, *, status: str | None = None) -> int:
        query = select(func.count()).select_from(ScheduleRun)
        if status is not None:
            query = query.where(ScheduleRun.status == status)
        async with self._sessions() as session:
            return int(await session.scalar(query) or 0)

    # -- stand-ups ------------------------------------------------------------------------

    async def open_standup(
        self,
        *,
        schedule_id: str,
        scheduled_for: datetime,
        team_id: str,
        channel_id: str,
        usergroup: str,
        prompt: str,
        opens_at: datetime,
        closes_at: datetime,
        members: Sequence[str],
    ) -> StandupSession | None:
        """Create a stand-up with its members; None if this firing already has one."""

        async def work(session: AsyncSession) -> StandupSession:
            row = StandupSession(
                schedule_id=schedule_id,
                scheduled_for=scheduled_for,
                team_id=team_id,
                channel_id=channel_id,
                usergroup=usergroup,
                prompt=prompt,
                opens_at=opens_at,
                closes_at=closes_at,
                status="open",
            )
            session.add(row)
            await session.flush()
            session.add_all(StandupAnswer(session_id=row.id, user_id=u) for u in members)
            return row

        try:
            return await self._retrying(work)
        except IntegrityError:
            return None

    async def prompted(self, session_id: str, user_id: str, *, dm_channel: str, ts: str) -> None:
        """Remember where a member's prompt went, so their replies there are captured."""

        async def work(session: AsyncSession) -> None:
            await session.execute(
                update(StandupAnswer)
                .where(StandupAnswer.session_id == session_id, StandupAnswer.user_id == user_id)
                .values(dm_channel=dm_channel, prompt_ts=ts)
            )

        await self._retrying(work)

    async def capture_reply(
        self, *, user_id: str, channel: str, text: str, now: datetime
    ) -> StandupReply | None:
        """Append ``text`` to the member's answer in an open stand-up prompted in ``channel``.

        Several messages from one person are joined; None when no stand-up is waiting for
        this person in this DM.
        """

        async def work(session: AsyncSession) -> StandupReply | None:
            answer = await session.scalar(
                select(StandupAnswer)
                .join(StandupSession, StandupSession.id == StandupAnswer.session_id)
                .where(
                    StandupAnswer.user_id == user_id,
                    # The prompt's DM channel is recorded just after the prompt is posted;
                    # a reply racing that record (while prompts are still going out) is
                    # still this member's answer (only DMs reach this method).
                    or_(
                        StandupAnswer.dm_channel == channel,
                        and_(
                            StandupAnswer.dm_channel.is_(None),
                            StandupSession.opens_at > now - PROMPTING_WINDOW,
                        ),
                    ),
                    StandupSession.status == "open",
                    StandupSession.opens_at <= now,
                    StandupSession.closes_at > now,
                )
                .order_by(StandupSession.opens_at.desc())
                .limit(1)
                .with_for_update()
            )
            if answer is None:
                return None
            first = not answer.answer
            answer.answer = text if first else f"{answer.answer}\n{text}"
            answer.answered_at = now
            return StandupReply(session_id=answer.session_id, user_id=user_id, first=first)

        return await self._retrying(work)

    async def standups_due(self, now: datetime) -> builtins.list[StandupSession]:
        """Open stand-ups whose answer window has ended."""
        async with self._sessions() as session:
            return list(
                await session.scalars(
                    select(StandupSession)
                    .where(StandupSession.status == "open", StandupSession.closes_at <= now)
                    .order_by(StandupSession.closes_at)
                )
            )

    async def open_standups(self) -> builtins.list[StandupSession]:
        async with self._sessions() as session:
            return list(
                await session.scalars(select(StandupSession).where(StandupSession.status == "open"))
            )

    async def close_standup(self, session_id: str) -> StandupSession | None:
        """Move a stand-up from open to closing; the one caller that did gets the row."""

        async def work(session: AsyncSession) -> StandupSession | None:
            result = await session.execute(
                update(StandupSession)
                .where(StandupSession.id == session_id, StandupSession.status == "open")
                .values(status="closing")
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            return await session.get(StandupSession, session_id)

        return await self._retrying(work)

    async def standup_closed(self, session_id: str, *, summary_ts: str | None) -> None:
        async def work(session: AsyncSession) -> None:
            await session.execute(
                update(StandupSession)
                .where(StandupSession.id == session_id)
                .values(status="closed", summary_ts=summary_ts)
            )

        await self._retrying(work)

    async def standup_answers(self, session_id: str) -> builtins.list[StandupAnswer]:
        async with self._sessions() as session:
            return list(
                await session.scalars(
                    select(StandupAnswer)
                    .where(StandupAnswer.session_id == session_id)
                    .order_by(StandupAnswer.id)
                )
            )

    async def standup(self, session_id: str) -> StandupSession | None:
        async with self._sessions() as session:
            return await session.get(StandupSession, session_id)


def dumps(data: Any) -> str:
    """The JSON stored in ``trigger_json`` / ``options_json``."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def loads(text: str) -> dict[str, Any]:
    value = json.loads(text or "{}")
    return value if isinstance(value, dict) else {}
