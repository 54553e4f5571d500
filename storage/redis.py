"""Redis connections: a real pool when ``REDIS_URL`` is set, in-process fakeredis otherwise.

The client retries connection errors and timeouts with exponential backoff (redis-py's
``Retry``). Anything still failing after that surfaces as :class:`RedisUnavailable` through
:func:`redis_errors`, so callers handle one typed error instead of a crashing process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from storage.errors import RedisUnavailable

log = logging.getLogger(f"switchboard.{__name__}")

#: The errors that mean "Redis is not reachable right now", as opposed to a bad command.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
)


def create_redis(
    url: str | None,
    *,
    max_connections: int = 50,
    retries: int = 3,
    socket_timeout: float = 5.0,
) -> Redis:
    """A Redis client for ``url``; ``None`` gives a private in-process fakeredis server.

    Responses are bytes (``decode_responses=False``) because checkpoints are binary.
    """
    if url is None:
        import fakeredis

        server = fakeredis.FakeServer()
        fake: Redis = fakeredis.FakeAsyncRedis(server=server)
        return fake
    retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries)
    return Redis.from_url(
        url,
        max_connections=max_connections,
        retry=retry,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=30,
    )


@asynccontextmanager
async def redis_errors(operation: str) -> AsyncIterator[None]:
    """Turn transport failures into :class:`RedisUnavailable` naming ``operation``."""
    try:
        yield
    except TRANSIENT_ERRORS as exc:
        log.warning("redis %s failed: %s", operation, type(exc).__name__)
        raise RedisUnavailable(f"{operation}: {type(exc).__name__}") from exc


async def ping(redis: Redis) -> bool:
    """True when Redis answers PING; used by ``/readyz``."""
    try:
        return bool(await redis.ping())
    except TRANSIENT_ERRORS:
        return False
