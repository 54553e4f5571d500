"""👍/👎 feedback on answers: one row per person per message; a second click updates it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Feedback, utcnow


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
    ) -> Feedback:
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
                return row
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

    async def since(self, when: datetime, *, value: str | None = None) -> list[Feedback]:
        async with self._sessions() as session:
            query = select(Feedback).where(Feedback.created_at >= when)
            if value is not None:
                query = query.where(Feedback.value == value)
            return list(await session.scalars(query.order_by(Feedback.created_at)))

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
