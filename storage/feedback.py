"""👍/👎 feedback on answers: one row per person per message; a second click updates it.

Callers get :class:`FeedbackRow` dataclasses (with the requester of the answer's run,
when the run is known), never ORM rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Feedback, Run, utcnow

__all__ = ["FeedbackRow", "FeedbackStore"]


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    """A feedback record with the requester of its run, when the run is known."""

    id: str
    skill: str
    thread_id: str
    channel_id: str
    user_id: str
    value: str
    comment: str | None
    created_at: datetime
    requester: str | None
    request: str | None = None  # the masked request, stored with the feedback
    message_ts: str = ""
    run_id: str | None = None


def _row(fb: Feedback, requester: str | None = None) -> FeedbackRow:
    return FeedbackRow(
        id=fb.id,
        skill=fb.skill,
        thread_id=fb.thread_id,
        channel_id=fb.channel_id,
        user_id=fb.user_id,
        value=fb.value,
        comment=fb.comment,
        created_at=fb.created_at,
        requester=requester,
        request=fb.request,
        message_ts=fb.message_ts,
        run_id=fb.run_id,
    )


class FeedbackStore:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def record(
        self,
        *,
        skill: str,
        thread_id: str,
        channel_id: str,
        message_ts: str,
        user_id: str,
        value: str,
        run_id: str | None = None,
        request: str | None = None,
    ) -> FeedbackRow:
        """Store (or change) ``user_id``'s verdict on a message; ``value`` is up or down.

        ``request``: the (already PII-masked) message the answer was given to, kept so the
        feedback still says what was asked once the conversation's memory has expired.
        """
        if value not in {"up", "down"}:
            raise ValueError("feedback is 'up' or 'down'")
        for _ in range(2):  # a concurrent first click may win the insert: then update
            try:
                async with self._sessions.begin() as session:
                    row = await self._find(session, channel_id, message_ts, user_id)
                    if row is None:
                        row = Feedback(
                            skill=skill,
                            thread_id=thread_id,
                            channel_id=channel_id,
                            message_ts=message_ts,
                            user_id=user_id,
                            value=value,
                            run_id=run_id,
                            request=request[:4000] if request else None,
                        )
                        session.add(row)
                    else:
                        row.value = value
                        if request and not row.request:
                            row.request = request[:4000]
                        row.updated_at = utcnow()
                    await session.flush()
                    return _row(row)
            except IntegrityError:
                continue
        raise RuntimeError("feedback could not be stored")

    async def comment(
        self, *, channel_id: str, message_ts: str, user_id: str, comment: str
    ) -> bool:
        async with self._sessions.begin() as session:
            row = await self._find(session, channel_id, message_ts, user_id)
            if row is None:
                return False
            row.comment = comment[:4000]
            row.updated_at = utcnow()
            return True

    async def since(self, when: datetime, *, value: str | None = None) -> list[FeedbackRow]:
        return await self.rows(since=when, value=value)

    async def rows(
        self,
        *,
        since: datetime | None = None,
        value: str | None = None,
        skills: Sequence[str] = (),
    ) -> list[FeedbackRow]:
        """Feedback (optionally only ``up``/``down``, since a moment, for some skills),
        oldest first, each with the requester of its run when the run is known."""
        query = select(Feedback, Run.actor).outerjoin(Run, Run.id == Feedback.run_id)
        if since is not None:
            query = query.where(Feedback.created_at >= since)
        if value is not None:
            query = query.where(Feedback.value == value)
        if skills:
            query = query.where(Feedback.skill.in_(list(skills)))
        query = query.order_by(Feedback.created_at, Feedback.id)
        async with self._sessions() as session:
            found = (await session.execute(query)).all()
        return [_row(fb, actor) for fb, actor in found]

    @staticmethod
    async def _find(
        session: AsyncSession, channel_id: str, message_ts: str, user_id: str
    ) -> Feedback | None:
        return await session.scalar(
            select(Feedback).where(
                Feedback.channel_id == channel_id,
                Feedback.message_ts == message_ts,
                Feedback.user_id == user_id,
            )
        )
