"""Fixtures for fault tests: a private PostgreSQL database with the queue schema, real
Redis, the fake Slack and model servers, and a :class:`Deployment` to start workers in."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from storage.runqueue import ensure_queue_schema, libpq_dsn
from storage.sql import upgrade
from tests.chaos.harness import Deployment
from tests.conftest import TEST_REDIS_URL, _real_redis, _reset_postgres
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


@pytest.fixture
async def deployment(
    postgres_url: str, slack: FakeSlackApi, tmp_path: Path
) -> AsyncIterator[Deployment]:
    await _reset_postgres(postgres_url)
    await upgrade(postgres_url)
    await ensure_queue_schema(libpq_dsn(postgres_url))
    redis = await _real_redis()  # skips (or fails under CI) when Redis is not there
    await redis.aclose()
    with model_server(latency=3.0) as model:
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
