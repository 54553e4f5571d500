"""One transaction, started over while SQLite reports it busy or its snapshot stale; and
single statements committed on their own (:class:`Statements`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import Executable, Result
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

T = TypeVar("T")


async def retrying(
    sessions: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    attempts: int = 20,
) -> T:
    """Run ``work`` in a transaction; on ``OperationalError`` (SQLite busy, or a stale
    snapshot after another writer committed) back off and run it again from the start.
    The last attempt's error propagates."""
    for attempt in range(attempts):
        try:
            async with sessions.begin() as session:
                return await work(session)
        except OperationalError:
            await asyncio.sleep(0.01 * (attempt + 1))
    async with sessions.begin() as session:
        return await work(session)


class Statements:
    """Single statements, each committed on its own, on the engine under ``sessions``,
    without the ORM session: the hot paths of the run queue (one inbox or run-record write
    per call).

    On PostgreSQL a statement runs in autocommit: no ``BEGIN``/``COMMIT`` round trips (a
    single statement is atomic on its own) and none of the ORM unit of work - about half
    the client CPU of the same write through a session (docs/perf.md). On SQLite it runs
    in a transaction, started over while the database is busy, like :func:`retrying`."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        bind = sessions.kw.get("bind")
        if not isinstance(bind, AsyncEngine):
            raise TypeError("the sessions are not bound to an AsyncEngine")
        self.engine = bind
        self.postgres = bind.dialect.name == "postgresql"
        self._autocommit = bind.execution_options(isolation_level="AUTOCOMMIT")

    async def run(self, statement: Executable, params: Mapping[str, Any] | None = None) -> int:
        """Run a write; the number of rows it matched."""
        return await self.fetch(statement, params, lambda r: int(getattr(r, "rowcount", 0) or 0))

    async def fetch(
        self,
        statement: Executable,
        params: Mapping[str, Any] | None,
        consume: Callable[[Result[Any]], T],
        *,
        attempts: int = 20,
    ) -> T:
        """Run a statement; ``consume`` reads its result (the rows of a ``RETURNING``)
        before the connection goes back to the pool."""
        if self.postgres:
            async with self._autocommit.connect() as conn:
                return consume(await conn.execute(statement, params))
        attempt = 0
        while True:
            try:
                async with self.engine.begin() as conn:
                    return consume(await conn.execute(statement, params))
            except OperationalError:
                attempt += 1
                if attempt > attempts:
                    raise
                await asyncio.sleep(0.01 * attempt)
