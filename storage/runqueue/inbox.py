"""The run queue's durable inbox: acked messages, one row each, until they are answered.

The queue engine's job for a thread carries no message: it says "answer what thread K has
waiting". The messages themselves live here, in our SQL database (SQLite or PostgreSQL),
so that

* a Slack message is stored once, whichever event or replica brought it (``dedupe_key``);
* several messages waiting in one thread are folded into the job that runs next;
* a job that is re-claimed after its worker died takes back exactly the rows it had
  claimed, with the placeholder it had posted (``placeholder_ts``), and updates that
  message instead of posting a second answer;
* the embedded default, whose queue is in memory, finds after a restart every message it
  acked but never answered.

Statuses: ``pending`` → ``claimed`` (by a job id) → ``done`` (answered, failed for good,
or stopped; ``outcome`` says which).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, distinct, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage._tx import Statements, retrying
from storage.models import InboxMessage, new_id

PENDING = "pending"
_CLOSED = "{}"  # a closed row keeps no message text
CLAIMED = "claimed"
DONE = "done"
#: Rows still open. Queries name these rather than ``status <> 'done'``: closed rows are
#: nearly all of the table, and only an equality lets PostgreSQL use the status index
#: (``<>`` scans every row ever stored, on every ack).
OPEN = (PENDING, CLAIMED)


@dataclass(frozen=True, slots=True)
class InboxItem:
    """One stored message, as the worker sees it (``payload`` is the receiver's JSON)."""

    id: str
    thread_key: str
    user_id: str
    payload: Mapping[str, Any]
    status: str
    job_id: int | None
    placeholder_ts: str | None
    attempts: int
    created_at: datetime
    outcome: str | None = None


def _item(row: Any) -> InboxItem:
    """An item from an ORM row or a Core result row of ``run_inbox`` (same attributes)."""
    return InboxItem(
        id=row.id,
        thread_key=row.thread_key,
        user_id=row.user_id,
        payload=json.loads(row.payload),
        status=row.status,
        job_id=row.job_id,
        placeholder_ts=row.placeholder_ts,
        attempts=row.attempts,
        created_at=row.created_at,
        outcome=row.outcome,
    )


#: A channel's other threads weigh this much less than a person's own: a busy channel (a
#: digest fan-out, an incident) slows its own new work a little, while someone opening
#: many threads at once queues mostly behind themselves.
CHANNEL_SHARE_WEIGHT = 4


@dataclass(frozen=True, slots=True)
class Share:
    """How much a person and a channel already have in the queue: their other threads with
    a message waiting or being answered (the thread asked about is not counted)."""

    user_threads: int
    channel_threads: int

    @property
    def priority(self) -> int:
        """The priority of the thread's job. Free workers take the highest priority first,
        then the oldest job, so a thread goes behind the threads its person - and, a quarter
        as much, its channel - already has waiting or running: one person or channel
        filling the queue cannot starve everyone else, and someone with nothing queued goes
        first. (``RunQueue.admit`` computes the same in SQL on PostgreSQL.)"""
        return -(self.user_threads + self.channel_threads // CHANNEL_SHARE_WEIGHT)


@dataclass(frozen=True, slots=True)
class Admitted:
    """A message just stored, with what its sender and channel already had waiting, and
    the job that will answer it when storing it also woke its thread (``RunQueue.admit``;
    None: a job was already waiting, or the thread is woken separately)."""

    row_id: str
    share: Share
    job_id: int | None = None


@dataclass(frozen=True, slots=True)
class Backlog:
    """Messages waiting for a worker (pending) and being answered (claimed)."""

    pending: int
    claimed: int
    oldest_pending_age: float  # seconds; 0 when nothing waits


def new_row(
    *,
    dedupe_key: str,
    thread_key: str,
    user_id: str,
    payload: Mapping[str, Any],
    placeholder_ts: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The column values of a new pending ``run_inbox`` row."""
    return {
        "id": new_id(),
        "dedupe_key": dedupe_key,
        "thread_key": thread_key,
        "user_id": user_id,
        "payload": json.dumps(dict(payload), separators=(",", ":")),
        "status": PENDING,
        "attempts": 0,
        "placeholder_ts": placeholder_ts,
        "created_at": now or datetime.now(UTC),
    }


def channel_pattern(thread_key: str) -> str:
    """A ``LIKE … ESCAPE '/'`` pattern matching the thread keys of ``thread_key``'s channel
    (thread keys are ``team:channel:ts``)."""
    prefix = thread_key.rsplit(":", 1)[0] + ":"
    return prefix.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"


class InboxStore:
    """Reads and writes ``run_inbox`` rows; every transaction is short and retried on
    SQLite's busy errors."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        #: The hot writes (claim, placeholder, finish), as single statements.
        self.statements = Statements(sessions)

    async def add(
        self,
        *,
        dedupe_key: str,
        thread_key: str,
        user_id: str,
        payload: Mapping[str, Any],
        placeholder_ts: str | None = None,
        now: datetime | None = None,
    ) -> str | None:
        """Store a new message; its row id, or None when ``dedupe_key`` was seen before.
        ``placeholder_ts``: a message already posted that the answer will replace."""
        row = new_row(
            dedupe_key=dedupe_key,
            thread_key=thread_key,
            user_id=user_id,
            payload=payload,
            placeholder_ts=placeholder_ts,
            now=now,
        )
        added = await self._insert(row, count=False)
        return added.row_id if added is not None else None

    async def admit(
        self,
        *,
        dedupe_key: str,
        thread_key: str,
        user_id: str,
        payload: Mapping[str, Any],
        placeholder_ts: str | None = None,
        now: datetime | None = None,
    ) -> Admitted | None:
        """:meth:`add`, and in the same transaction the :class:`Share` of the sender and the
        thread's channel (the receiver's ack path: one round trip fewer). None when
        ``dedupe_key`` was seen before."""
        row = new_row(
            dedupe_key=dedupe_key,
            thread_key=thread_key,
            user_id=user_id,
            payload=payload,
            placeholder_ts=placeholder_ts,
            now=now,
        )
        return await self._insert(row, count=True)

    async def _insert(self, values: dict[str, Any], *, count: bool) -> Admitted | None:
        """Insert a :func:`new_row`; with ``count``, read the share in the same transaction."""
        share = Share(user_threads=0, channel_threads=0)
        try:
            async with self._sessions.begin() as session:
                await session.execute(insert(InboxMessage).values(**values))
                if count:
                    share = await self._share(
                        session, user_id=values["user_id"], thread_key=values["thread_key"]
                    )
        except IntegrityError:
            return None
        return Admitted(row_id=values["id"], share=share)

    async def claim(self, thread_key: str, job_id: int) -> list[InboxItem]:
        """Take the thread's pending messages for ``job_id``, oldest first, together with
        the ones this job had claimed on an earlier attempt (its worker died).

        One ``UPDATE … RETURNING`` (PostgreSQL, and SQLite since 3.35): the rows are
        locked, marked and read in a single statement. Jobs of one thread never run at
        once (the queue's lock), so nothing else claims these rows meanwhile."""
        statement = (
            update(InboxMessage)
            .where(
                InboxMessage.thread_key == thread_key,
                or_(
                    InboxMessage.status == PENDING,
                    and_(InboxMessage.status == CLAIMED, InboxMessage.job_id == job_id),
                ),
            )
            .values(
                status=CLAIMED,
                job_id=job_id,
                attempts=InboxMessage.attempts + 1,
                claimed_at=datetime.now(UTC),
            )
            .returning(*InboxMessage.__table__.c)
        )

        rows = await self.statements.fetch(statement, None, lambda result: result.all())
        return sorted((_item(row) for row in rows), key=lambda i: (i.created_at, i.id))

    async def set_placeholder(self, ids: Sequence[str], ts: str) -> None:
        """Remember the message a turn's answer will replace."""
        await self.statements.run(
            update(InboxMessage).where(InboxMessage.id.in_(ids)).values(placeholder_ts=ts)
        )

    async def finish(self, ids: Sequence[str], outcome: str) -> None:
        """Close rows: answered (``reply``, ``approval``, ``refusal``), ``failed``, ``stopped``.

        What the person typed is dropped from a closed row (the conversation keeps it,
        masked); the row stays as the dedupe record of the message."""

        await self.statements.run(
            update(InboxMessage)
            .where(InboxMessage.id.in_(ids))
            .values(
                status=DONE,
                outcome=outcome[:32],
                finished_at=datetime.now(UTC),
                payload=_CLOSED,
            )
        )

    async def requeue(self, job_id: int) -> int:
        """Put a running job's rows back to pending (a new message interrupts the turn: the
        next job answers them together with it); placeholders are kept."""

        async def work(session: AsyncSession) -> int:
            result = await session.execute(
                update(InboxMessage)
                .where(InboxMessage.job_id == job_id, InboxMessage.status == CLAIMED)
                .values(status=PENDING, job_id=None)
            )
            return int(getattr(result, "rowcount", 0) or 0)

        return await retrying(self._sessions, work)

    async def release_all(self) -> int:
        """Put every claimed row back to pending (the embedded queue lost its jobs with the
        process); placeholders are kept, so the answer still replaces them."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(InboxMessage)
                .where(InboxMessage.status == CLAIMED)
                .values(status=PENDING, job_id=None)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def waiting_threads(self, *, older_than: timedelta = timedelta(0)) -> list[str]:
        """Threads with a pending message older than ``older_than`` (to wake their job)."""
        cutoff = datetime.now(UTC) - older_than
        async with self._sessions() as session:
            rows = await session.execute(
                select(InboxMessage.thread_key)
                .where(InboxMessage.status == PENDING, InboxMessage.created_at <= cutoff)
                .group_by(InboxMessage.thread_key)
                .order_by(func.min(InboxMessage.created_at))
            )
            return [str(r[0]) for r in rows]

    async def thread_items(self, thread_key: str, *, job_id: int | None = None) -> list[InboxItem]:
        """The thread's open rows (optionally only those claimed by ``job_id``)."""
        query = select(InboxMessage).where(
            InboxMessage.thread_key == thread_key, InboxMessage.status.in_(OPEN)
        )
        if job_id is not None:
            query = query.where(InboxMessage.job_id == job_id)
        async with self._sessions() as session:
            rows = (await session.scalars(query.order_by(InboxMessage.created_at))).all()
            return [_item(row) for row in rows]

    async def get(self, row_id: str) -> InboxItem | None:
        async with self._sessions() as session:
            row = await session.get(InboxMessage, row_id)
            return _item(row) if row is not None else None

    async def by_job(self, job_id: int) -> list[InboxItem]:
        """Every row a job claimed (for ``switchboard runs show`` and the Stop button)."""
        async with self._sessions() as session:
            rows = (
                await session.scalars(
                    select(InboxMessage)
                    .where(InboxMessage.job_id == job_id)
                    .order_by(InboxMessage.created_at)
                )
            ).all()
            return [_item(row) for row in rows]

    async def position(self, item_created_at: datetime) -> int:
        """How many pending messages were stored before this one, plus one ("you're #N")."""
        async with self._sessions() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(InboxMessage)
                .where(InboxMessage.status == PENDING, InboxMessage.created_at < item_created_at)
            )
            return int(count or 0) + 1

    async def overdue(self, *, older_than: timedelta, limit: int = 100) -> list[InboxItem]:
        """Pending rows older than ``older_than`` that have no placeholder yet."""
        cutoff = datetime.now(UTC) - older_than
        async with self._sessions() as session:
            rows = (
                await session.scalars(
                    select(InboxMessage)
                    .where(
                        InboxMessage.status == PENDING,
                        InboxMessage.placeholder_ts.is_(None),
                        InboxMessage.created_at <= cutoff,
                    )
                    .order_by(InboxMessage.created_at)
                    .limit(limit)
                )
            ).all()
            return [_item(row) for row in rows]

    async def set_placeholder_if_unset(self, row_id: str, ts: str) -> bool:
        """Store ``ts`` unless the row already has a placeholder; True when stored."""
        stored = await self.statements.run(
            update(InboxMessage)
            .where(InboxMessage.id == row_id, InboxMessage.placeholder_ts.is_(None))
            .values(placeholder_ts=ts)
        )
        return stored > 0

    @staticmethod
    async def _share(session: AsyncSession, *, user_id: str, thread_key: str) -> Share:
        """The other open threads of ``user_id`` and of ``thread_key``'s channel (thread
        keys are ``team:channel:ts``), for fair ordering; one query over open rows."""
        channel_prefix = thread_key.rsplit(":", 1)[0] + ":"
        others = InboxMessage.thread_key != thread_key
        row = (
            await session.execute(
                select(
                    func.count(distinct(InboxMessage.thread_key)).filter(
                        InboxMessage.user_id == user_id
                    ),
                    func.count(distinct(InboxMessage.thread_key)).filter(
                        InboxMessage.thread_key.startswith(channel_prefix, autoescape=True)
                    ),
                ).where(InboxMessage.status.in_(OPEN), others)
            )
        ).one()
        return Share(user_threads=int(row[0] or 0), channel_threads=int(row[1] or 0))

    async def prune(self, *, older_than: timedelta, batch: int = 5000) -> int:
        """Delete rows closed longer than ``older_than`` ago (their dedupe and ``runs
        show`` role is over), ``batch`` at a time so no statement holds locks for long;
        the number deleted."""
        cutoff = datetime.now(UTC) - older_than
        total = 0
        while True:
            old = (
                select(InboxMessage.id)
                .where(InboxMessage.status == DONE, InboxMessage.finished_at < cutoff)
                .order_by(InboxMessage.id)
                .limit(batch)
            )
            deleted = await self.statements.run(
                delete(InboxMessage).where(InboxMessage.id.in_(old))
            )
            total += deleted
            if deleted < batch:
                return total

    async def backlog(self) -> Backlog:
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(
                        InboxMessage.status,
                        func.count(),
                        func.min(InboxMessage.created_at),
                    )
                    .where(InboxMessage.status.in_(OPEN))
                    .group_by(InboxMessage.status)
                )
            ).all()
        counts = {str(status): int(count) for status, count, _ in rows}
        oldest = next((first for status, _, first in rows if status == PENDING), None)
        age = 0.0
        if oldest is not None:
            if oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=UTC)
            age = max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        return Backlog(
            pending=counts.get(PENDING, 0), claimed=counts.get(CLAIMED, 0), oldest_pending_age=age
        )
