"""Schedules themselves: create, find, list, pause and resume, delete, "run now"."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import models
from storage.models import utcnow
from storage.schedules import _records as records
from storage.schedules._base import SqlStore
from storage.schedules._records import Schedule
from storage.schedules.firings import FiringStore
from storage.schedules.standups import StandupStore


class ScheduleStore(SqlStore):
    """All SQL about schedule rows; ``firings`` and ``standups`` over the same database
    are the run records and the stand-up state."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(sessions=sessions)
        self.firings = FiringStore(sessions=sessions)
        self.standups = StandupStore(sessions=sessions)

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
        fields = {
            "team_id": team_id,
            "skill": skill,
            "channel_id": channel_id,
            "trigger": trigger,
            "tz": tz,
            "owner": owner,
            "kind": kind,
            "input_text": input_text,
            "grace_seconds": grace_seconds,
            "options": options,
            "enabled": enabled,
            "created_at": created_at,
            "updated_at": updated_at,
            "next_run_at": next_run_at,
            "last_fire_at": last_fire_at,
        }

        async def work(session: AsyncSession) -> Schedule:
            row = _new_row(fields)
            session.add(row)
            await session.flush()
            return records.schedule(row)

        return await self._write("create schedule", work)

    async def add_many(self, schedules: Sequence[Mapping[str, Any]]) -> None:
        """Bulk insert (benchmarks and imports); each item holds :meth:`create`'s
        keyword arguments."""

        async def work(session: AsyncSession) -> None:
            session.add_all([_new_row(fields) for fields in schedules])

        await self._write("add schedules", work)

    async def get(self, schedule_id: str) -> Schedule | None:
        async def work(session: AsyncSession) -> Schedule | None:
            row = await session.get(models.Schedule, schedule_id)
            return None if row is None else records.schedule(row)

        return await self._read("read schedule", work)

    async def find(self, prefix: str) -> Schedule | None:
        """A schedule by id or by an unambiguous id prefix (operators type short ids)."""
        found = await self.get(prefix)
        if found is not None or len(prefix) < 4:
            return found

        async def work(session: AsyncSession) -> list[models.Schedule]:
            query = select(models.Schedule).where(
                models.Schedule.id.startswith(prefix, autoescape=True)
            )
            return list(await session.scalars(query.limit(2)))

        rows = await self._read("find schedule", work)
        return records.schedule(rows[0]) if len(rows) == 1 else None

    async def list_schedules(
        self,
        *,
        channel: str | None = None,
        owner: str | None = None,
        enabled: bool | None = None,
        limit: int | None = None,
    ) -> list[Schedule]:
        """Schedules, oldest first, filtered by channel, owner and state."""
        table = models.Schedule
        query = select(table).order_by(table.created_at, table.id)
        if channel is not None:
            query = query.where(table.channel_id == channel)
        if owner is not None:
            query = query.where(table.owner == owner)
        if enabled is not None:
            query = query.where(table.enabled == enabled)
        if limit is not None:
            query = query.limit(limit)

        async def work(session: AsyncSession) -> list[Schedule]:
            return [records.schedule(row) for row in await session.scalars(query)]

        return await self._read("list schedules", work)

    async def versions(self) -> dict[str, int]:
        """``{id: version}`` of enabled schedules: what a resync compares against."""

        async def work(session: AsyncSession) -> dict[str, int]:
            rows = await session.execute(
                select(models.Schedule.id, models.Schedule.version).where(
                    models.Schedule.enabled.is_(True)
                )
            )
            return {str(row[0]): int(row[1]) for row in rows}

        return await self._read("read schedule versions", work)

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
            row = await session.get(models.Schedule, schedule_id, with_for_update=True)
            if row is None:
                return None
            if row.enabled == enabled:
                return records.schedule(row)
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
            return records.schedule(row)

        return await self._write("pause or resume schedule", work)

    async def delete(self, schedule_id: str) -> bool:
        """Delete a schedule with its runs and stand-ups; False if it did not exist."""

        async def work(session: AsyncSession) -> bool:
            standups = select(models.StandupSession.id).where(
                models.StandupSession.schedule_id == schedule_id
            )
            await session.execute(
                delete(models.StandupAnswer).where(models.StandupAnswer.session_id.in_(standups))
            )
            await session.execute(
                delete(models.StandupSession).where(
                    models.StandupSession.schedule_id == schedule_id
                )
            )
            await session.execute(
                delete(models.ScheduleRun).where(models.ScheduleRun.schedule_id == schedule_id)
            )
            result = await session.execute(
                delete(models.Schedule).where(models.Schedule.id == schedule_id)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

        return await self._write("delete schedule", work)

    async def request_run(self, schedule_id: str, at: datetime) -> bool:
        """Ask the leader to run the schedule now (kept until the leader takes it)."""
        table = models.Schedule

        async def work(session: AsyncSession) -> bool:
            result = await session.execute(
                update(table)
                .where(table.id == schedule_id)
                .values(run_requested_at=at, version=table.version + 1, updated_at=at)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

        return await self._write("request a run", work)

    async def pending_run_requests(self) -> int:
        """How many "Run now" requests no leader has taken yet."""
        table = models.Schedule

        async def work(session: AsyncSession) -> int:
            found = await session.scalar(
                select(func.count()).select_from(table).where(table.run_requested_at.is_not(None))
            )
            return int(found or 0)

        return await self._read("count run requests", work)

    async def take_run_request(self, schedule_id: str, at: datetime) -> bool:
        """Clear the run request made at ``at``; True for the one caller that cleared it."""
        table = models.Schedule

        async def work(session: AsyncSession) -> bool:
            result = await session.execute(
                update(table)
                .where(table.id == schedule_id, table.run_requested_at == at)
                .values(run_requested_at=None)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

        return await self._write("take a run request", work)


def _new_row(fields: Mapping[str, Any]) -> models.Schedule:
    """An ORM row from :meth:`ScheduleStore.create`'s arguments (JSON built here)."""
    values = dict(fields)
    trigger = values.pop("trigger")
    options = values.pop("options", None)
    created = values.pop("created_at", None) or utcnow()
    updated = values.pop("updated_at", None) or created
    return models.Schedule(
        **values,
        trigger_json=records.dumps(trigger),
        options_json=records.dumps(options or {}),
        created_at=created,
        updated_at=updated,
    )
