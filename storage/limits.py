"""Per-skill limits in SQL: admins' kill switches, and the tokens a skill used since a time.

Token usage needs no table of its own: every run's tokens are already in ``runs`` (written
when the run finishes), and ``ix_runs_skill_started_at`` makes the day's sum one index range.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage._tx import retrying
from storage.errors import DatabaseUnavailable
from storage.models import Run, SkillSwitch

__all__ = ["SkillLimitsStore", "SwitchedOff"]


@dataclass(frozen=True, slots=True)
class SwitchedOff:
    """A skill an admin switched off: who, when, why."""

    skill: str
    by: str
    at: datetime
    reason: str | None = None


class SkillLimitsStore:
    """Reads and flips kill switches; sums a skill's token usage."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def set_enabled(
        self,
        skill: str,
        enabled: bool,
        *,
        by: str,
        reason: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Switch ``skill`` on or off (idempotent: the latest call wins)."""
        when = at or datetime.now(UTC)

        async def work(session: AsyncSession) -> None:
            row = await session.get(SkillSwitch, skill, with_for_update=True)
            if row is None:
                row = SkillSwitch(skill=skill)
                session.add(row)
            row.enabled = enabled
            row.reason = None if enabled else reason
            row.changed_by = by
            row.changed_at = when

        for attempt in range(2):  # two admins creating the first row at once: one retries
            try:
                await retrying(self._sessions, work)
                return
            except IntegrityError:
                if attempt:
                    raise
            except SQLAlchemyError as exc:
                raise DatabaseUnavailable(f"kill switch: {type(exc).__name__}") from exc

    async def switched_off(self) -> dict[str, SwitchedOff]:
        """Every skill that is switched off, by name."""
        try:
            async with self._sessions() as session:
                rows = await session.scalars(
                    select(SkillSwitch).where(SkillSwitch.enabled.is_(False))
                )
                return {
                    row.skill: SwitchedOff(row.skill, row.changed_by, row.changed_at, row.reason)
                    for row in rows
                }
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"kill switches: {type(exc).__name__}") from exc

    async def tokens_since(self, skill: str, since: datetime) -> int:
        """Total tokens of ``skill``'s runs started at or after ``since``."""
        try:
            async with self._sessions() as session:
                total = await session.scalar(
                    select(func.coalesce(func.sum(Run.total_tokens), 0)).where(
                        Run.skill == skill, Run.started_at >= since
                    )
                )
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"token usage: {type(exc).__name__}") from exc
        return int(total or 0)
