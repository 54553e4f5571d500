"""Stand-up state: a session per stand-up firing, one answer row per member asked."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models
from storage.errors import Conflict
from storage.schedules import _records as records
from storage.schedules._base import SqlStore
from storage.schedules._records import StandupAnswer, StandupReply, StandupSession

_Session = models.StandupSession
_Answer = models.StandupAnswer

#: How long after a stand-up opens a reply may arrive before its prompt is recorded.
PROMPTING_WINDOW = timedelta(minutes=2)


class StandupStore(SqlStore):
    """The ``standup_sessions`` and ``standup_answers`` tables."""

    async def open(
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
            row = _Session(
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
            session.add_all(_Answer(session_id=row.id, user_id=u) for u in members)
            return records.standup_session(row)

        try:
            return await self._write("open stand-up", work)
        except Conflict:
            return None

    async def prompted(self, session_id: str, user_id: str, *, dm_channel: str, ts: str) -> None:
        """Remember where a member's prompt went, so their replies there are captured."""

        async def work(session: AsyncSession) -> None:
            await session.execute(
                update(_Answer)
                .where(_Answer.session_id == session_id, _Answer.user_id == user_id)
                .values(dm_channel=dm_channel, prompt_ts=ts)
            )

        await self._write("record stand-up prompt", work)

    async def capture_reply(
        self, *, user_id: str, channel: str, text: str, now: datetime
    ) -> StandupReply | None:
        """Append ``text`` to the member's answer in an open stand-up prompted in ``channel``.

        Several messages from one person are joined; None when no stand-up is waiting for
        this person in this DM.
        """

        async def work(session: AsyncSession) -> StandupReply | None:
            answer = await session.scalar(
                select(_Answer)
                .join(_Session, _Session.id == _Answer.session_id)
                .where(
                    _Answer.user_id == user_id,
                    # The prompt's DM channel is recorded just after the prompt is posted;
                    # a reply racing that record (while prompts are still going out) is
                    # still this member's answer (only DMs reach this method).
                    or_(
                        _Answer.dm_channel == channel,
                        and_(
                            _Answer.dm_channel.is_(None),
                            _Session.opens_at > now - PROMPTING_WINDOW,
                        ),
                    ),
                    _Session.status == "open",
                    _Session.opens_at <= now,
                    _Session.closes_at > now,
                )
                .order_by(_Session.opens_at.desc())
                .limit(1)
                .with_for_update()
            )
            if answer is None:
                return None
            first = not answer.answer
            answer.answer = text if first else f"{answer.answer}\n{text}"
            answer.answered_at = now
            return StandupReply(session_id=answer.session_id, user_id=user_id, first=first)

        return await self._write("capture stand-up answer", work)

    async def due(self, now: datetime) -> list[StandupSession]:
        """Open stand-ups whose answer window has ended."""
        query = (
            select(_Session)
            .where(_Session.status == "open", _Session.closes_at <= now)
            .order_by(_Session.closes_at)
        )
        return await self._sessions_of("read due stand-ups", query)

    async def open_sessions(self) -> list[StandupSession]:
        """Every stand-up still collecting answers."""
        query = select(_Session).where(_Session.status == "open")
        return await self._sessions_of("read open stand-ups", query)

    async def close(self, session_id: str) -> StandupSession | None:
        """Move a stand-up from open to closing; the one caller that did gets the record."""

        async def work(session: AsyncSession) -> StandupSession | None:
            result = await session.execute(
                update(_Session)
                .where(_Session.id == session_id, _Session.status == "open")
                .values(status="closing")
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = await session.get(_Session, session_id)
            return None if row is None else records.standup_session(row)

        return await self._write("close stand-up", work)

    async def closed(self, session_id: str, *, summary_ts: str | None) -> None:
        """Mark a stand-up's summary as posted (``summary_ts`` None when it could not be)."""

        async def work(session: AsyncSession) -> None:
            await session.execute(
                update(_Session)
                .where(_Session.id == session_id)
                .values(status="closed", summary_ts=summary_ts)
            )

        await self._write("record stand-up summary", work)

    async def answers(self, session_id: str) -> list[StandupAnswer]:
        async def work(session: AsyncSession) -> list[StandupAnswer]:
            rows = await session.scalars(
                select(_Answer).where(_Answer.session_id == session_id).order_by(_Answer.id)
            )
            return [records.standup_answer(row) for row in rows]

        return await self._read("read stand-up answers", work)

    async def get(self, session_id: str) -> StandupSession | None:
        async def work(session: AsyncSession) -> StandupSession | None:
            row = await session.get(_Session, session_id)
            return None if row is None else records.standup_session(row)

        return await self._read("read stand-up", work)

    async def _sessions_of(self, operation: str, query: object) -> list[StandupSession]:
        async def work(session: AsyncSession) -> list[StandupSession]:
            return [records.standup_session(row) for row in await session.scalars(query)]  # type: ignore[call-overload]

        return await self._read(operation, work)
