"""Firings: the run records of schedules, recorded exactly once.

A firing is recorded by inserting a ``schedule_runs`` row whose (schedule, scheduled time)
key is unique, in the same transaction that advances the schedule's ``last_fire_at``.
Whoever inserts the row runs the firing; a second leader (after a hand-over, or during a
split) loses and skips. Failure streaks and auto-pause are one ``UPDATE`` per finished
firing, so the owner is told once per streak however many replicas are involved.

Firings can also be recorded a few seconds *ahead* of their instant, in batches
(:meth:`FiringStore.preclaim`): the row is inserted with ``status='running'`` and no
``started_at``. Such a *pending* row is started at the instant by one compare-and-set
``UPDATE`` (:meth:`FiringStore.start`) that also re-checks that the schedule is still
enabled, so exactly one process starts it and a pause in between makes it ``skipped``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models
from storage.errors import Conflict
from storage.schedules import _records as records
from storage.schedules._base import SqlStore
from storage.schedules._records import FiringResult, PlannedFiring, RunStatus, ScheduleRun

_Schedule = models.Schedule
_Run = models.ScheduleRun
_MISSED = "the scheduler was not running within the grace window"


class FiringStore(SqlStore):
    """The ``schedule_runs`` table and the schedule columns a firing moves."""

    async def begin(
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

        Returns the new run record, or None when this firing was already recorded by
        someone else — then the caller must not run it.
        """
        missed = sorted(missed)

        async def work(session: AsyncSession) -> ScheduleRun | None:
            # Core statements, not the ORM: this is the hot path when many schedules fire
            # in the same second. The UPDATE re-checks what the leader planned with.
            values: dict[str, Any] = {"next_run_at": next_run_at}
            if status != "running":
                values["last_status"] = status
            query = update(_Schedule).where(_Schedule.id == schedule_id)
            if kind == "scheduled":
                values["last_fire_at"] = scheduled_for
                query = query.where(
                    _Schedule.enabled.is_(True),
                    or_(_Schedule.last_fire_at.is_(None), _Schedule.last_fire_at < scheduled_for),
                )
            else:
                values.pop("next_run_at")
                values["updated_at"] = _Schedule.updated_at
            result = await session.execute(
                query.values(**values).execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            if missed:
                await session.execute(
                    insert(_Run),
                    [
                        {
                            "schedule_id": schedule_id,
                            "scheduled_for": at,
                            "kind": "scheduled",
                            "status": "missed",
                            "finished_at": started_at,
                            "error": _MISSED,
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
            run_id = await session.scalar(insert(_Run).values(**fields).returning(_Run.id))
            assert run_id is not None
            return ScheduleRun(id=run_id, **fields)

        try:
            return await self._write("record firing", work)
        except Conflict:
            return None

    async def preclaim(
        self, firings: Sequence[PlannedFiring], *, fence: int | None
    ) -> dict[str, ScheduleRun]:
        """Record upcoming firings before their instant, in one transaction.

        Each schedule is advanced as :meth:`begin` would (only if it is enabled and has
        not fired at or after that instant); the run rows are inserted as *pending*
        (``status='running'``, no ``started_at``) with one multi-row ``INSERT``. Returns the
        recorded runs by schedule id; schedules missing from the result must not be run
        from this record. Raises :class:`~storage.errors.Conflict` when one of the
        firings was already recorded (nothing is kept then).
        """
        if not firings:
            return {}

        async def work(session: AsyncSession) -> dict[str, ScheduleRun]:
            kept: list[PlannedFiring] = []
            for firing in firings:
                result = await session.execute(
                    update(_Schedule)
                    .where(
                        _Schedule.id == firing.schedule_id,
                        _Schedule.enabled.is_(True),
                        or_(
                            _Schedule.last_fire_at.is_(None),
                            _Schedule.last_fire_at < firing.scheduled_for,
                        ),
                    )
                    .values(last_fire_at=firing.scheduled_for, next_run_at=firing.next_run_at)
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    kept.append(firing)
            if not kept:
                return {}
            rows: list[dict[str, Any]] = [
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
                    insert(_Run).returning(_Run.id, sort_by_parameter_order=True), rows
                )
            ).all()
            return {
                firing.schedule_id: ScheduleRun(id=run_id, **fields)
                for run_id, firing, fields in zip(ids, kept, rows, strict=True)
            }

        return await self._write("record firings ahead", work)

    async def start(
        self,
        run_ids: Sequence[int],
        *,
        started_at: datetime,
        fence: int | None,
        skip: dict[int, str] | None = None,
    ) -> list[int]:
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
            return (_Run.id.in_(list(ids)), _Run.status == "running", _Run.started_at.is_(None))

        async def work(session: AsyncSession) -> list[int]:
            enabled = select(_Schedule.id).where(_Schedule.enabled.is_(True)).scalar_subquery()
            started: list[int] = []
            if wanted:
                started = list(
                    await session.scalars(
                        update(_Run)
                        .where(*pending(wanted), _Run.schedule_id.in_(enabled))
                        .values(started_at=started_at, fence=fence)
                        .returning(_Run.id)
                        .execution_options(synchronize_session=False)
                    )
                )
            paused = [run_id for run_id in wanted if run_id not in started]
            if paused:
                await session.execute(
                    delete(_Run)
                    .where(*pending(paused), _Run.schedule_id.not_in(enabled))
                    .execution_options(synchronize_session=False)
                )
            for reason in set(skip.values()):
                ids = [run_id for run_id, why in skip.items() if why == reason]
                skipped = list(
                    await session.scalars(
                        update(_Run)
                        .where(*pending(ids))
                        .values(status="skipped", finished_at=started_at, error=reason)
                        .returning(_Run.schedule_id)
                        .execution_options(synchronize_session=False)
                    )
                )
                if skipped:
                    await session.execute(
                        update(_Schedule)
                        .where(_Schedule.id.in_(skipped))
                        .values(last_status="skipped")
                        .execution_options(synchronize_session=False)
                    )
            return started

        return await self._write("start firings", work)

    async def miss(self, run_ids: Sequence[int], *, now: datetime) -> int:
        """Close pending firings found too late to run (beyond grace) as ``missed``."""
        if not run_ids:
            return 0

        async def work(session: AsyncSession) -> int:
            result = await session.execute(
                update(_Run)
                .where(
                    _Run.id.in_(list(run_ids)),
                    _Run.status == "running",
                    _Run.started_at.is_(None),
                )
                .values(status="missed", finished_at=now, error=_MISSED)
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

        return await self._write("record missed firings", work)

    async def release(self, firings: Sequence[tuple[int, PlannedFiring]]) -> set[int]:
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
                    delete(_Run)
                    .where(
                        _Run.id == run_id,
                        _Run.status == "running",
                        _Run.started_at.is_(None),
                    )
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                released.add(run_id)
                await session.execute(
                    update(_Schedule)
                    .where(
                        _Schedule.id == firing.schedule_id,
                        _Schedule.last_fire_at == firing.scheduled_for,
                    )
                    .values(last_fire_at=firing.previous_fire_at, next_run_at=firing.scheduled_for)
                    .execution_options(synchronize_session=False)
                )
            return released

        return await self._write("release firings", work)

    async def pending(self) -> list[ScheduleRun]:
        """Scheduled runs recorded ahead of time and not started yet, oldest first."""
        query = (
            select(_Run)
            .where(_Run.status == "running", _Run.started_at.is_(None), _Run.kind == "scheduled")
            .order_by(_Run.scheduled_for, _Run.id)
        )
        return await self._runs("read pending firings", query)

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
            schedule = await session.get(_Schedule, schedule_id, with_for_update=True)
            if schedule is None:
                return 0
            known = set(
                await session.scalars(
                    select(_Run.scheduled_for).where(
                        _Run.schedule_id == schedule_id, _Run.scheduled_for.in_(list(missed))
                    )
                )
            )
            fresh = [at for at in missed if at not in known]
            for at in fresh:
                session.add(
                    _Run(
                        schedule_id=schedule_id,
                        scheduled_for=at,
                        status="missed",
                        finished_at=now,
                        error=_MISSED,
                    )
                )
            latest = max(missed)
            if schedule.last_fire_at is None or schedule.last_fire_at < latest:
                schedule.last_fire_at = latest
            schedule.last_status = "missed"
            schedule.next_run_at = next_run_at
            return len(fresh)

        try:
            return await self._write("record missed firings", work)
        except Conflict:
            return 0

    async def finish(
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
            run = await session.get(_Run, run_id)
            if run is None:
                return FiringResult(None, 0, False, False)
            run.status = status
            run.finished_at = finished_at
            run.error = error
            run.message_ts = message_ts
            run.run_id = skill_run_id
            schedule = await session.get(_Schedule, run.schedule_id, with_for_update=True)
            if schedule is None:
                return FiringResult(None, 0, False, False)
            schedule.last_status = status
            if status == "ok":
                schedule.failure_streak = 0
                schedule.failure_notified = False
                return FiringResult(records.schedule(schedule), 0, False, False)
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
            return FiringResult(records.schedule(schedule), schedule.failure_streak, notify, paused)

        return await self._write("finish firing", work)

    async def get(self, run_id: int) -> ScheduleRun | None:
        """One run record by id (a queued firing carries only that)."""

        async def work(session: AsyncSession) -> ScheduleRun | None:
            row = await session.get(_Run, run_id)
            return None if row is None else records.schedule_run(row)

        return await self._read("read firing", work)

    async def runs(self, schedule_id: str, *, limit: int = 50) -> list[ScheduleRun]:
        """The latest runs of a schedule, newest first."""
        query = (
            select(_Run)
            .where(_Run.schedule_id == schedule_id)
            .order_by(_Run.scheduled_for.desc(), _Run.id.desc())
            .limit(limit)
        )
        return await self._runs("read firings", query)

    async def count(self, *, status: str | None = None) -> int:
        query = select(func.count()).select_from(_Run)
        if status is not None:
            query = query.where(_Run.status == status)

        async def work(session: AsyncSession) -> int:
            return int(await session.scalar(query) or 0)

        return await self._read("count firings", work)

    async def _runs(self, operation: str, query: Any) -> list[ScheduleRun]:
        async def work(session: AsyncSession) -> list[ScheduleRun]:
            return [records.schedule_run(row) for row in await session.scalars(query)]

        return await self._read(operation, work)
