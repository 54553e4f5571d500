"""The approval audit log: append-only and hash-chained, so tampering is detectable.

Each row stores the hash of the previous row (``prev_hash``) and its own hash over
``prev_hash`` and its content. Changing, deleting or reordering a row breaks the chain at
that row; :meth:`AuditLog.verify` finds the first broken one. ``prev_hash`` is unique, so
two writers that read the same head cannot both append after it: the loser retries on the
new head, and the chain stays linear under concurrency on every backend.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import AuditEntry

GENESIS = "0" * 64
EVENTS = frozenset(
    {
        "requested",
        "approved",
        "rejected",
        "edited",
        "expired",
        "executed",
        "failed",
        "refused-click",
        "vote",
        # authorization (docs/security.md)
        "abandoned",
        "refused-read",
        "refused-reset",
        "refused-schedule",
    }
)


def entry_hash(
    *,
    prev_hash: str,
    at: datetime,
    event: str,
    actor: str,
    request_id: str | None,
    args_hash: str | None,
    summary: str,
) -> str:
    content = {
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "event": event,
        "actor": actor,
        "request_id": request_id,
        "args_hash": args_hash,
        "summary": summary,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Broken:
    """The first row where the chain does not hold, and why."""

    seq: int
    reason: str


class AuditLog:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def append(
        self,
        event: str,
        *,
        actor: str,
        request_id: str | None = None,
        args_hash: str | None = None,
        summary: str = "",
        at: datetime | None = None,
    ) -> AuditEntry:
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}")
        when = (at or datetime.now(UTC)).astimezone(UTC)
        for attempt in range(50):
            try:
                async with self._sessions.begin() as session:
                    head = await session.scalar(
                        select(AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
                    )
                    prev = head or GENESIS
                    row = AuditEntry(
                        at=when,
                        event=event,
                        actor=actor,
                        request_id=request_id,
                        args_hash=args_hash,
                        summary=summary[:2000],
                        prev_hash=prev,
                        hash=entry_hash(
                            prev_hash=prev,
                            at=when,
                            event=event,
                            actor=actor,
                            request_id=request_id,
                            args_hash=args_hash,
                            summary=summary[:2000],
                        ),
                    )
                    session.add(row)
                return row
            except (IntegrityError, OperationalError):
                # Another writer appended after the same head (or SQLite was busy): retry.
                await asyncio.sleep(min(0.005 * (attempt + 1), 0.1))
        raise RuntimeError("could not append to the audit log")

    async def verify(self) -> tuple[int, Broken | None]:
        """Check the whole chain: (rows checked, the first broken row or None)."""
        prev = GENESIS
        count = 0
        async for row in self._rows():
            count += 1
            if row.prev_hash != prev:
                return count, Broken(row.seq, "previous-hash link does not match")
            expected = entry_hash(
                prev_hash=row.prev_hash,
                at=row.at,
                event=row.event,
                actor=row.actor,
                request_id=row.request_id,
                args_hash=row.args_hash,
                summary=row.summary,
            )
            if expected != row.hash:
                return count, Broken(row.seq, "content does not match its hash")
            prev = row.hash
        return count, None

    async def export(self, since: datetime | None = None) -> AsyncIterator[dict[str, Any]]:
        async for row in self._rows(since):
            yield {
                "seq": row.seq,
                "at": row.at.isoformat(),
                "event": row.event,
                "actor": row.actor,
                "request_id": row.request_id,
                "args_hash": row.args_hash,
                "summary": row.summary,
                "prev_hash": row.prev_hash,
                "hash": row.hash,
            }

    async def for_request(self, request_id: str) -> list[AuditEntry]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.request_id == request_id)
                .order_by(AuditEntry.seq)
            )
            return list(rows)

    async def _rows(self, since: datetime | None = None) -> AsyncIterator[AuditEntry]:
        async with self._sessions() as session:
            query = select(AuditEntry).order_by(AuditEntry.seq)
            if since is not None:
                query = query.where(AuditEntry.at >= since)
            result = await session.stream_scalars(query.execution_options(yield_per=500))
            async for row in result:
                yield row
