"""Run records, thread ownership and channel defaults: the runtime's SQL bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage._tx import Statements
from storage.models import ChannelDefault, Run, ThreadSkill, new_id


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.total_tokens + other.total_tokens,
        )


#: What a usage report can group runs by (the person who asked is ``user``).
UsageDimension = Literal["skill", "user", "channel"]
USAGE_DIMENSIONS: tuple[UsageDimension, ...] = ("skill", "user", "channel")


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Runs of one skill, person or channel in a report's window.

    ``cost_usd`` sums the runs whose cost is known; ``unpriced_runs`` counts runs that used
    tokens of a model without a price (or ran before costs were recorded), so a report
    can say the total is a lower bound instead of passing it off as complete.
    """

    key: str | None
    runs: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    unpriced_runs: int


class RunStore:
    """Writes one ``runs`` row per run: opened when it starts, closed with its outcome."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._statements = Statements(sessions)  # the two writes of every run

    async def start(
        self,
        *,
        skill: str,
        thread_id: str,
        actor: str,
        channel_id: str | None,
        model: str,
        trigger: str,
        started_at: datetime | None = None,
        run_id: str | None = None,
        skill_version: str | None = None,
    ) -> str:
        row_id = run_id or new_id()
        await self._statements.run(
            insert(Run).values(
                id=row_id,
                skill=skill,
                thread_id=thread_id,
                actor=actor,
                channel_id=channel_id,
                model=model,
                skill_version=skill_version,
                trigger=trigger,
                started_at=started_at or datetime.now(UTC),
                outcome="running",
            )
        )
        return row_id

    async def finish(
        self,
        run_id: str,
        *,
        outcome: str,
        usage: Usage,
        error: str | None = None,
        error_ref: str | None = None,
        finished_at: datetime | None = None,
        cost_usd: float | None = None,
        started_at: datetime | None = None,
    ) -> None:
        """Close the run's row with its outcome; ``started_at`` (as given to :meth:`start`)
        saves reading it back for the latency."""
        end = finished_at or datetime.now(UTC)
        values: dict[str, object] = {
            "finished_at": end,
            "outcome": outcome,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
            "cost_usd": cost_usd,
            "error": error,
            "error_ref": error_ref,
        }
        if started_at is None:  # not known to the caller: read it (one statement more)
            async with self._sessions() as session:
                started_at = await session.scalar(select(Run.started_at).where(Run.id == run_id))
            if started_at is None:
                return
        values["latency_ms"] = max(0, int((end - started_at).total_seconds() * 1000))
        await self._statements.run(update(Run).where(Run.id == run_id).values(**values))

    async def get(self, run_id: str) -> Run | None:
        async with self._sessions() as session:
            return await session.get(Run, run_id)

    async def for_thread(self, thread_id: str) -> list[Run]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Run).where(Run.thread_id == thread_id).order_by(Run.started_at)
            )
            return list(rows)

    async def usage(
        self, *, since: datetime, by: UsageDimension, limit: int | None = None
    ) -> list[UsageRow]:
        """Runs started at or after ``since``, grouped ``by`` skill, user or channel, the
        most expensive first (then by tokens)."""
        column = {"skill": Run.skill, "user": Run.actor, "channel": Run.channel_id}[by]
        cost = func.coalesce(func.sum(Run.cost_usd), 0.0)
        tokens = func.coalesce(func.sum(Run.input_tokens + Run.output_tokens), 0)
        query = (
            select(
                column,
                func.count(),
                func.coalesce(func.sum(case((Run.outcome == "error", 1), else_=0)), 0),
                func.coalesce(func.sum(Run.input_tokens), 0),
                func.coalesce(func.sum(Run.output_tokens), 0),
                cost,
                func.coalesce(
                    func.sum(
                        case(
                            (
                                Run.cost_usd.is_(None)
                                & ((Run.input_tokens + Run.output_tokens) > 0),
                                1,
                            ),
                            else_=0,
                        )
                    ),
                    0,
                ),
            )
            .where(Run.started_at >= since)
            .group_by(column)
            .order_by(cost.desc(), tokens.desc(), column)
        )
        if limit is not None:
            query = query.limit(limit)
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        return [
            UsageRow(
                key=row[0],
                runs=int(row[1]),
                errors=int(row[2]),
                input_tokens=int(row[3]),
                output_tokens=int(row[4]),
                cost_usd=float(row[5]),
                unpriced_runs=int(row[6]),
            )
            for row in rows
        ]

    async def count(self) -> int:
        async with self._sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(Run)) or 0)


@dataclass(frozen=True, slots=True)
class ThreadOwner:
    """The skill a thread belongs to and the version of it the thread runs on."""

    skill: str
    version: str | None = None


class ThreadSkills:
    """Which skill owns a conversation thread: the first skill to answer keeps it, and
    the version of it that answered first (a canary rollout never switches a thread)."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get(self, thread_id: str) -> str | None:
        owner = await self.owner(thread_id)
        return owner.skill if owner else None

    async def owner(self, thread_id: str) -> ThreadOwner | None:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(ThreadSkill.skill, ThreadSkill.skill_version).where(
                        ThreadSkill.thread_id == thread_id
                    )
                )
            ).first()
            return ThreadOwner(row.skill, row.skill_version) if row else None

    async def claim(self, thread_id: str, skill: str, *, version: str | None = None) -> str:
        """Record ``skill`` as the owner unless one is already set; returns the owner."""
        try:
            async with self._sessions.begin() as session:
                await session.execute(
                    insert(ThreadSkill).values(
                        thread_id=thread_id, skill=skill, skill_version=version
                    )
                )
        except IntegrityError:
            owner = await self.get(thread_id)
            return owner or skill
        return skill

    async def assign(self, thread_id: str, skill: str, *, version: str | None = None) -> None:
        """Hand the thread to ``skill`` (a person named another skill in it)."""
        async with self._sessions.begin() as session:
            row = await session.get(ThreadSkill, thread_id)
            if row is None:
                session.add(ThreadSkill(thread_id=thread_id, skill=skill, skill_version=version))
            else:
                row.skill = skill
                row.skill_version = version

    async def forget(self, thread_id: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(delete(ThreadSkill).where(ThreadSkill.thread_id == thread_id))


class ChannelDefaults:
    """Per-channel default skill, settable by anyone allowed to configure the channel."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get(self, channel_id: str) -> str | None:
        async with self._sessions() as session:
            row = await session.get(ChannelDefault, channel_id)
            return row.skill if row else None

    async def set(self, channel_id: str, skill: str, *, set_by: str) -> None:
        async with self._sessions.begin() as session:
            row = await session.get(ChannelDefault, channel_id)
            if row is None:
                session.add(ChannelDefault(channel_id=channel_id, skill=skill, set_by=set_by))
            else:
                row.skill = skill
                row.set_by = set_by

    async def clear(self, channel_id: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                delete(ChannelDefault).where(ChannelDefault.channel_id == channel_id)
            )
