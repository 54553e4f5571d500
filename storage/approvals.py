"""Approval requests and votes, with transactional state changes.

Every state change is one ``UPDATE … WHERE status IN (…)``: of any number of concurrent
clicks, retries or replicas, exactly one sees its update applied and acts on it. Votes
have a unique (request, approver) key, so the same person clicking twice counts once. On
PostgreSQL the request row is locked (``FOR UPDATE``) while a vote is counted, so two
approvers reaching the quorum together cannot both miss it; SQLite serialises writers and
a stale transaction is retried.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage._tx import retrying
from storage.models import ApprovalRequestRow, ApprovalVote, ToolExecution, utcnow

T = TypeVar("T")

PENDING = "pending"
OPEN_STATES = frozenset({PENDING})
FINAL_STATES = frozenset(
    {"approved", "rejected", "expired", "superseded", "executed", "failed", "abandoned"}
)
#: How long an edit chain may get before it is treated as corrupt (a cycle, say).
MAX_CHAIN = 100


def canonical_json(value: Mapping[str, Any]) -> str:
    """The one JSON form of a request's arguments: what is stored and what is hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """An approval request as the store returns it (the ``approval_requests`` row, with its
    JSON columns parsed: ``args`` the masked arguments, ``policy`` the approval policy the
    request was opened under, with the tool's parameter ``schema``)."""

    id: str
    skill: str
    thread_id: str
    channel_id: str
    thread_ts: str | None
    requester: str
    tool: str
    args: Mapping[str, Any]
    args_hash: str
    interrupt_id: str
    tool_call_id: str
    policy: Mapping[str, Any]
    quorum: int
    status: str
    edited_from: str | None
    edited_by: str | None
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None
    card_channel: str | None
    card_ts: str | None
    completed_at: datetime | None
    result_summary: str | None


def _object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return dict(value) if isinstance(value, dict) else {}


def _record(row: ApprovalRequestRow) -> ApprovalRecord:
    return ApprovalRecord(
        id=row.id,
        skill=row.skill,
        thread_id=row.thread_id,
        channel_id=row.channel_id,
        thread_ts=row.thread_ts,
        requester=row.requester,
        tool=row.tool,
        args=_object(row.args_json),
        args_hash=row.args_hash,
        interrupt_id=row.interrupt_id,
        tool_call_id=row.tool_call_id,
        policy=_object(row.policy_json),
        quorum=row.quorum,
        status=row.status,
        edited_from=row.edited_from,
        edited_by=row.edited_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        reason=row.reason,
        card_channel=row.card_channel,
        card_ts=row.card_ts,
        completed_at=row.completed_at,
        result_summary=row.result_summary,
    )


@dataclass(frozen=True, slots=True)
class VoteResult:
    state: Literal["recorded", "approved", "duplicate", "not_pending"]
    request: ApprovalRecord
    votes: int


@dataclass(frozen=True, slots=True)
class Execution:
    """An approved call's entry in the execution ledger."""

    request_id: str
    idempotency_key: str
    state: str  # started | succeeded | failed
    attempts: int
    started_at: datetime
    finished_at: datetime | None
    result: str | None


@dataclass(frozen=True, slots=True)
class Recorded:
    """An execution already recorded for a request: its outcome and result text."""

    state: str
    ok: bool
    result: str


class _LateVote(Exception):
    """Rolls back a vote inserted after another transaction decided the request."""

    def __init__(self, result: VoteResult) -> None:
        self.result = result


class ApprovalStore:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def _retrying(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        return await retrying(self._sessions, work)

    async def create(
        self,
        *,
        skill: str,
        thread_id: str,
        channel_id: str,
        thread_ts: str | None,
        requester: str,
        tool: str,
        args: Mapping[str, Any],
        args_hash: str,
        interrupt_id: str,
        tool_call_id: str,
        policy: Mapping[str, Any],
        quorum: int,
        created_at: datetime,
        expires_at: datetime,
        status: str = PENDING,
        edited_from: str | None = None,
        edited_by: str | None = None,
        card_channel: str | None = None,
        card_ts: str | None = None,
    ) -> ApprovalRecord:
        """Store a new request; ``args`` and ``policy`` are kept as JSON."""
        row = ApprovalRequestRow(
            skill=skill,
            thread_id=thread_id,
            channel_id=channel_id,
            thread_ts=thread_ts,
            requester=requester,
            tool=tool,
            args_json=canonical_json(args),
            args_hash=args_hash,
            interrupt_id=interrupt_id,
            tool_call_id=tool_call_id,
            policy_json=json.dumps(dict(policy)),
            quorum=quorum,
            status=status,
            edited_from=edited_from,
            edited_by=edited_by,
            created_at=created_at,
            expires_at=expires_at,
            card_channel=card_channel,
            card_ts=card_ts,
        )

        async def work(session: AsyncSession) -> ApprovalRecord:
            session.add(row)
            await session.flush()
            return _record(row)

        return await self._retrying(work)

    async def get(self, request_id: str) -> ApprovalRecord | None:
        async with self._sessions() as session:
            row = await session.get(ApprovalRequestRow, request_id)
            return None if row is None else _record(row)

    async def chain(self, request_id: str) -> list[ApprovalRecord]:
        """The request and every version it was edited from, the original first."""
        rows: list[ApprovalRecord] = []
        seen: set[str] = set()
        async with self._sessions() as session:
            current: str | None = request_id
            while current is not None and current not in seen and len(rows) < MAX_CHAIN:
                seen.add(current)
                row = await session.get(ApprovalRequestRow, current)
                if row is None:
                    break
                rows.append(_record(row))
                current = row.edited_from
        return list(reversed(rows))

    async def voters(self, request_ids: Iterable[str]) -> dict[str, list[str]]:
        """Request id → who approved it, in order, for each of ``request_ids``."""
        ids = list(request_ids)
        found: dict[str, list[str]] = {request_id: [] for request_id in ids}
        if not ids:
            return found
        async with self._sessions() as session:
            rows = await session.execute(
                select(ApprovalVote.request_id, ApprovalVote.approver)
                .where(ApprovalVote.request_id.in_(ids))
                .order_by(ApprovalVote.id)
            )
            for request_id, approver in rows:
                found[str(request_id)].append(str(approver))
        return found

    async def votes(self, request_id: str) -> list[str]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(ApprovalVote.approver)
                .where(ApprovalVote.request_id == request_id)
                .order_by(ApprovalVote.id)
            )
            return list(rows)

    async def add_vote(self, request_id: str, approver: str, *, now: datetime) -> VoteResult:
        """Record ``approver``'s approval; the vote that reaches the quorum approves."""

        async def work(session: AsyncSession) -> VoteResult:
            row = await session.scalar(
                select(ApprovalRequestRow)
                .where(ApprovalRequestRow.id == request_id)
                .with_for_update()
            )
            if row is None:
                raise LookupError(request_id)
            if row.status != PENDING:
                return VoteResult(
                    "not_pending", _record(row), await self._count(session, request_id)
                )
            existing = await session.scalar(
                select(ApprovalVote.id).where(
                    ApprovalVote.request_id == request_id, ApprovalVote.approver == approver
                )
            )
            if existing is not None:
                return VoteResult("duplicate", _record(row), await self._count(session, request_id))
            session.add(ApprovalVote(request_id=request_id, approver=approver, created_at=now))
            await session.flush()
            count = await self._count(session, request_id)
            if count < row.quorum:
                return VoteResult("recorded", _record(row), count)
            won = await session.execute(
                update(ApprovalRequestRow)
                .where(ApprovalRequestRow.id == request_id, ApprovalRequestRow.status == PENDING)
                .values(status="approved", decided_at=now, decided_by=approver)
            )
            if won.rowcount != 1:  # type: ignore[attr-defined]
                # Decided meanwhile (SQLite reads outside the write lock): this vote did not
                # count, so it must not stay on the record either.
                raise _LateVote(VoteResult("not_pending", _record(row), count - 1))
            row.status, row.decided_at, row.decided_by = "approved", now, approver
            return VoteResult("approved", _record(row), count)

        try:
            return await self._retrying(work)
        except _LateVote as late:
            return late.result
        except IntegrityError:  # the same person's concurrent click won the insert
            row = await self.get(request_id)
            assert row is not None
            return VoteResult("duplicate", row, len(await self.votes(request_id)))

    @staticmethod
    async def _count(session: AsyncSession, request_id: str) -> int:
        count = await session.scalar(
            select(func.count())
            .select_from(ApprovalVote)
            .where(ApprovalVote.request_id == request_id)
        )
        return int(count or 0)

    async def transition(
        self, request_id: str, *, to: str, allowed_from: Iterable[str], **values: Any
    ) -> bool:
        """Move a request to ``to`` if it is in one of ``allowed_from``; True if this call did."""

        async def work(session: AsyncSession) -> bool:
            result = await session.execute(
                update(ApprovalRequestRow)
                .where(
                    ApprovalRequestRow.id == request_id,
                    ApprovalRequestRow.status.in_(list(allowed_from)),
                )
                .values(status=to, **values)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

        return await self._retrying(work)

    async def update_fields(self, request_id: str, **values: Any) -> None:
        async def work(session: AsyncSession) -> None:
            await session.execute(
                update(ApprovalRequestRow)
                .where(ApprovalRequestRow.id == request_id)
                .values(**values)
            )

        await self._retrying(work)

    async def due_for_expiry(self, now: datetime, *, limit: int = 100) -> list[ApprovalRecord]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(ApprovalRequestRow)
                .where(ApprovalRequestRow.status == PENDING, ApprovalRequestRow.expires_at <= now)
                .order_by(ApprovalRequestRow.expires_at)
                .limit(limit)
            )
            return [_record(row) for row in rows]

    async def stalled(self, now: datetime, *, older_than: timedelta) -> list[ApprovalRecord]:
        """Approved or rejected requests whose run was never completed (a crash window)."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(ApprovalRequestRow).where(
                    ApprovalRequestRow.status.in_(["approved", "rejected", "expired"]),
                    ApprovalRequestRow.completed_at.is_(None),
                    ApprovalRequestRow.decided_at <= now - older_than,
                )
            )
            return [_record(row) for row in rows]

    async def open_for(
        self, *, approver: str, usergroups: Iterable[str], requester: str
    ) -> tuple[list[ApprovalRecord], list[ApprovalRecord]]:
        """(requests ``approver`` may decide, requests ``requester`` made), pending only."""
        async with self._sessions() as session:
            pending = [
                _record(row)
                for row in await session.scalars(
                    select(ApprovalRequestRow)
                    .where(ApprovalRequestRow.status == PENDING)
                    .order_by(ApprovalRequestRow.created_at)
                    .limit(200)
                )
            ]
        groups = set(usergroups)
        waiting: list[ApprovalRecord] = []
        for row in pending:
            policy = row.policy
            allowed = approver in policy.get("users", []) or bool(
                groups & set(policy.get("usergroups", []))
            )
            if allowed and not (policy.get("four_eyes", True) and row.requester == approver):
                waiting.append(row)
        mine = [row for row in pending if row.requester == requester]
        return waiting, mine

    async def for_thread(self, thread_id: str) -> list[ApprovalRecord]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(ApprovalRequestRow)
                .where(ApprovalRequestRow.thread_id == thread_id)
                .order_by(ApprovalRequestRow.created_at)
            )
            return [_record(row) for row in rows]

    # -- executions (the ledger behind exactly-once tool calls) ---------------------------

    async def begin_execution(self, request_id: str, key: str) -> Recorded | None:
        """Record that the call is about to happen; returns the earlier outcome if the call
        already finished (then it must not be made again)."""

        async def work(session: AsyncSession) -> Recorded | None:
            # Started before and never finished: call again, same key. One UPDATE counts
            # the attempt in the database (a read-modify-write here would lose concurrent
            # attempts on SQLite, whose reads take no lock); it also takes the write lock,
            # so what is read next cannot change before this transaction commits.
            bumped = await session.execute(
                update(ToolExecution)
                .where(
                    ToolExecution.request_id == request_id,
                    ToolExecution.state.not_in(["succeeded", "failed"]),
                )
                .values(attempts=ToolExecution.attempts + 1)
            )
            if bumped.rowcount == 1:  # type: ignore[attr-defined]
                return None
            row = await session.get(ToolExecution, request_id, with_for_update=True)
            if row is None:
                session.add(
                    ToolExecution(request_id=request_id, idempotency_key=key, state="started")
                )
                return None
            return Recorded(row.state, row.state == "succeeded", row.result or "")

        try:
            return await self._retrying(work)
        except IntegrityError:
            return await self.begin_execution(request_id, key)

    async def finish_execution(self, request_id: str, *, ok: bool, result: str) -> None:
        async def work(session: AsyncSession) -> None:
            await session.execute(
                update(ToolExecution)
                .where(ToolExecution.request_id == request_id)
                .values(
                    state="succeeded" if ok else "failed",
                    finished_at=utcnow(),
                    result=result,  # in full (masked): the audit needs what ran
                )
            )

        await self._retrying(work)

    async def execution(self, request_id: str) -> Execution | None:
        async with self._sessions() as session:
            row = await session.get(ToolExecution, request_id)
            if row is None:
                return None
            return Execution(
                request_id=row.request_id,
                idempotency_key=row.idempotency_key,
                state=row.state,
                attempts=row.attempts,
                started_at=row.started_at,
                finished_at=row.finished_at,
                result=row.result,
            )


def is_open(row: ApprovalRecord) -> bool:
    return row.status in OPEN_STATES


__all__ = [
    "ApprovalRecord",
    "ApprovalStore",
    "Execution",
    "Recorded",
    "VoteResult",
    "canonical_json",
    "is_open",
]
