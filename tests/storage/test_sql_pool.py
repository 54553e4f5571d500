"""The engine's pool never hands out a dead connection, without pinging every checkout.

A private PostgreSQL cluster (initdb in a temporary directory, its own port) is restarted
under a pooled engine: the next transaction must succeed at once, as with
``pool_pre_ping``. Statement counts come from the server's own statistics, so the test
also fails if a checkout starts pinging again (three round trips each on asyncpg).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import sql
from storage.sql import create_engine
from tests.chaos.harness import PrivatePostgres, private_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def cluster() -> Iterator[PrivatePostgres]:
    with private_cluster() as server:
        yield server


async def _transactions(cluster: PrivatePostgres) -> int:
    """Transactions the server counted in database ``postgres`` (commits + rollbacks)."""
    conn = await asyncpg.connect(cluster.url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        value = await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        return int(value)
    finally:
        await conn.close()


async def _counted(cluster: PrivatePostgres, engine: AsyncEngine, transactions: int) -> int:
    """Run ``transactions`` one-statement transactions; what the server counted meanwhile
    (pings included), once its statistics are flushed."""
    before = await _transactions(cluster)
    for _ in range(transactions):
        async with engine.begin() as conn:
            await conn.execute(text("SELECT 1"))
    await asyncio.sleep(0.6)
    return await _transactions(cluster) - before


async def test_a_restart_costs_no_failed_transaction(cluster: PrivatePostgres) -> None:
    engine = create_engine(cluster.url, pool_size=2)
    try:
        async with engine.connect() as conn:  # pooled from now on
            assert await conn.scalar(text("SELECT 1")) == 1
        # The event loop keeps running meanwhile (as in a server), so asyncpg sees the
        # old connection closed.
        await asyncio.to_thread(cluster.restart)
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT 2")) == 2
    finally:
        await engine.dispose()


async def test_a_busy_pool_does_not_ping_and_an_idle_connection_is_pinged(
    cluster: PrivatePostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(cluster.url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT 1"))
        await asyncio.sleep(0.6)  # the statistics collector flushes at most every 0.5 s
        busy = await _counted(cluster, engine, 20)
        # 20 transactions, plus our own counting connection; a ping per checkout (each a
        # transaction of its own) would make it 40.
        assert busy <= 22, busy

        monkeypatch.setattr(sql, "PING_IDLE_AFTER", 0.0)  # every checkout counts as idle
        idle = await _counted(cluster, engine, 5)
        assert idle >= 10, idle  # 5 pings and 5 transactions
    finally:
        await engine.dispose()
