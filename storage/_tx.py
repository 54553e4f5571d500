"""One transaction, started over while SQLite reports it busy or its snapshot stale."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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
