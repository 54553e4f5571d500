"""Shared fixtures: every backend contract runs against the embedded and the real service.

Real services come from ``TEST_DATABASE_URL`` (default: the local PostgreSQL database
``test``) and ``TEST_REDIS_URL`` (default: local Redis, db 15). When one is unreachable its
tests are skipped with the reason, unless ``SWITCHBOARD_REQUIRE_SERVICES=1`` (set by
``.ci/run``), which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.keys import Keys
from storage.redis import create_redis

TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("SWITCHBOARD_REQUIRE_SERVICES") == "1"
T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a private loop in a worker thread.

    Sync fixtures may be set up while a test's event loop is already running (an async
    fixture asking for them), where ``asyncio.run`` would refuse.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _unavailable(service: str, reason: str) -> None:
    message = f"{service} not reachable ({reason})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}; SWITCHBOARD_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(message)


# -- Redis ---------------------------------------------------------------------------------


async def _real_redis() -> Redis:
    client = create_redis(TEST_REDIS_URL, retries=0, socket_timeout=2.0)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        _unavailable("Redis", f"{TEST_REDIS_URL}: {type(exc).__name__}")
    return client


@pytest.fixture(params=["fakeredis", pytest.param("redis", marks=pytest.mark.redis)])
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    """A Redis client: in-process fakeredis, then the real server."""
    client = create_redis(None) if request.param == "fakeredis" else await _real_redis()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def real_redis() -> AsyncIterator[Redis]:
    """The real Redis server only (for behaviour fakeredis cannot show, like expiry races)."""
    client = await _real_redis()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def keys() -> Keys:
    """A key builder with a prefix unique to the test, so tests never see each other's keys."""
    return Keys(prefix=f"sbtest-{uuid.uuid4().hex[:10]}")


# -- SQL -----------------------------------------------------------------------------------


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL database for this test session, dropped at the end."""
    import asyncpg

    admin_dsn = TEST_DATABASE_URL.replace("postgresql+asyncpg://", "postgresql://")
    name = f"sbtest_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def _create() -> None:
        conn = await asyncpg.connect(admin_dsn, timeout=3)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def _drop() -> None:
        conn = await asyncpg.connect(admin_dsn, timeout=3)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    try:
        run_sync(_create())
    except Exception as exc:
        _unavailable("PostgreSQL", f"{admin_dsn.split('@')[-1]}: {type(exc).__name__}: {exc}")
    yield _with_database(TEST_DATABASE_URL, name)
    run_sync(_drop())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty database URL: a fresh SQLite file, then a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sql") / "switchboard.db"
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    run_sync(_reset_postgres(url))
    return url


async def _reset_postgres(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=3)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated engine over each SQL backend; asserts no connection is left checked out."""
    from storage.sql import create_engine, upgrade

    await upgrade(database_url)
    eng = create_engine(database_url)
    try:
        yield eng
        checked_out = eng.pool.checkedout()  # type: ignore[attr-defined]
        assert checked_out == 0, f"{checked_out} connection(s) left checked out"
    finally:
        await eng.dispose()


# -- a whole deployment's backends -------------------------------------------------------


@dataclass
class Backend:
    """One SQL database (migrated) and one Redis that replicas of a test share."""

    name: str
    database_url: str
    redis: Redis


@pytest.fixture(
    params=["embedded", pytest.param("services", marks=[pytest.mark.postgres, pytest.mark.redis])]
)
async def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Backend]:
    """SQLite + fakeredis (the embedded defaults), then PostgreSQL + real Redis."""
    from storage.sql import upgrade

    if request.param == "embedded":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sql') / 'sb.db'}"
        client = create_redis(None)
    else:
        url = request.getfixturevalue("postgres_url")
        await _reset_postgres(url)
        client = await _real_redis()
    await upgrade(url)
    try:
        yield Backend(name=request.param, database_url=url, redis=client)
    finally:
        await client.aclose()
