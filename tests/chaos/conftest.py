"""Fixtures for fault tests: a private PostgreSQL database with the queue schema, real
Redis, the fake Slack and model servers, and a :class:`Deployment` to start workers in.

Tests that kill or restart a store get stores of their own (:func:`own_stores`): a
``redis-server`` on a free port and a PostgreSQL cluster made by ``initdb`` in a temporary
directory. The shared servers on 5432/6379 are never stopped.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from storage.runqueue import ensure_queue_schema, libpq_dsn
from storage.sql import upgrade
from tests.chaos.harness import Deployment, PrivatePostgres, PrivateRedis, private_cluster
from tests.conftest import TEST_REDIS_URL, _real_redis, _reset_postgres, _unavailable
from tests.fakes.openai_server import FakeOpenAIServer, echo
from tests.fakes.slack_api import FakeSlackApi, slack_api_server


@pytest.fixture
def slack() -> Iterator[FakeSlackApi]:
    with slack_api_server() as server:
        server.add_user("U0SAM", "sam", real_name="Sam Whitaker")
        server.add_channel("C0GENERAL", "general", members=["U0SAM"])
        yield server


def model_server(latency: float) -> FakeOpenAIServer:
    return FakeOpenAIServer(latency=latency, default=echo)


async def _prepare(database_url: str) -> None:
    await upgrade(database_url)
    await ensure_queue_schema(libpq_dsn(database_url))


def _model_latency(request: pytest.FixtureRequest, default: float) -> float:
    """``@pytest.mark.model_latency(seconds)`` on a test sets the fake model's latency."""
    marker = request.node.get_closest_marker("model_latency")
    return float(marker.args[0]) if marker else default


@pytest.fixture
async def deployment(
    postgres_url: str, slack: FakeSlackApi, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Deployment]:
    await _reset_postgres(postgres_url)
    await _prepare(postgres_url)
    redis = await _real_redis()  # skips (or fails under CI) when Redis is not there
    await redis.aclose()
    with model_server(latency=_model_latency(request, 3.0)) as model:
        deployment = Deployment(
            database_url=postgres_url,
            redis_url=TEST_REDIS_URL,
            redis_prefix=f"chaos-{uuid.uuid4().hex[:8]}",
            slack=slack,
            model=model,
            tmp=tmp_path,
        )
        try:
            yield deployment
        finally:
            deployment.stop_all()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A ``redis-server`` of this test alone, started (kill and restart it at will)."""
    try:
        server = PrivateRedis(tmp_path)
    except FileNotFoundError as exc:
        _unavailable("a private redis-server", str(exc))
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of this test alone (initdb, trust, own port), started."""
    with private_cluster() as cluster:
        yield cluster


@pytest.fixture
async def own_stores(
    private_postgres: PrivatePostgres,
    private_redis: PrivateRedis,
    slack: FakeSlackApi,
    tmp_path: Path,
) -> AsyncIterator[Deployment]:
    """A deployment on stores of its own, for tests that kill or restart them."""
    await _prepare(private_postgres.url)
    with model_server(latency=1.0) as model:
        deployment = Deployment(
            database_url=private_postgres.url,
            redis_url=private_redis.url,
            redis_prefix="chaos",
            slack=slack,
            model=model,
            tmp=tmp_path,
        )
        try:
            yield deployment
        finally:
            deployment.stop_all()
