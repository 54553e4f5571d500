"""What the three schedule stores share: sessions, retries, and storage errors.

SQLAlchemy's exceptions stay inside ``storage/``: a unique key that was already taken
comes out as :class:`~storage.errors.Conflict`, anything else the database or its driver
raised as :class:`~storage.errors.DatabaseUnavailable` (naming only the error's type, so
no SQL text or parameter reaches a log line or a Slack message built from it).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage._tx import retrying
from storage.errors import Conflict, DatabaseUnavailable

log = logging.getLogger(f"switchboard.{__name__}")

T = TypeVar("T")

#: Not reachable, or refused for a reason that is not the caller's: retry later.
_UNAVAILABLE: tuple[type[BaseException], ...] = (sa_exc.DBAPIError, sa_exc.TimeoutError, OSError)


@contextlib.asynccontextmanager
async def _translated(operation: str) -> AsyncIterator[None]:
    try:
        yield
    except sa_exc.IntegrityError as exc:
        raise Conflict(operation) from exc
    except _UNAVAILABLE as exc:
        log.warning("SQL %s failed: %s", operation, type(exc).__name__)
        raise DatabaseUnavailable(f"{operation}: {type(exc).__name__}") from exc


class SqlStore:
    """Base of the schedule stores: reads and retried transactions, errors translated."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def _write(self, operation: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """``work`` in one transaction, started over while SQLite is busy."""
        async with _translated(operation):
            return await retrying(self._sessions, work)

    async def _read(self, operation: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """``work`` in a session of its own (no transaction kept open)."""
        async with _translated(operation), self._sessions() as session:
            return await work(session)
