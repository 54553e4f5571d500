"""Fixtures for the run queue: a migrated SQL database with the queue schema, per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.runqueue import InboxStore, RunQueue, ensure_queue_schema, libpq_dsn
from storage.sql import create_engine, session_factory, upgrade
from tests.conftest import _reset_postgres


@dataclass
class QueueBackend:
    name: str
    database_url: str
    engine: AsyncEngine
    inbox: InboxStore

    def queue(self, **options: float) -> RunQueue:
        defaults: dict[str, float] = {
            "heartbeat": 0.5,
            "stalled_timeout": 2.0,
            "fetch_poll": 0.5,
            "abort_poll": 0.2,
            "backoff": 0.1,
        }
        return RunQueue(database_url=self.database_url, inbox=self.inbox, **{**defaults, **options})


async def _prepare(url: str) -> None:
    await _reset_postgres(url)
    await upgrade(url)
    await ensure_queue_schema(libpq_dsn(url))


@pytest.fixture
async def pg_queue(postgres_url: str) -> AsyncIterator[QueueBackend]:
    """PostgreSQL: Procrastinate's psycopg connector, shared by several RunQueues."""
    await _prepare(postgres_url)
    engine = create_engine(postgres_url)
    try:
        yield QueueBackend(
            "postgres", postgres_url, engine, InboxStore(sessions=session_factory(engine))
        )
    finally:
        await engine.dispose()


@pytest.fixture(params=["embedded", pytest.param("postgres", marks=pytest.mark.postgres)])
async def queue_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[QueueBackend]:
    """SQLite + the in-memory connector (embedded), then PostgreSQL."""
    if request.param == "embedded":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('q') / 'sb.db'}"
        await upgrade(url)
    else:
        url = request.getfixturevalue("postgres_url")
        await _prepare(url)
    engine = create_engine(url)
    try:
        yield QueueBackend(request.param, url, engine, InboxStore(sessions=session_factory(engine)))
    finally:
        await engine.dispose()
