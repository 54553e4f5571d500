"""Idempotency claims and fenced leases, on fakeredis and on the real server."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from storage.errors import LeaseLost, RedisUnavailable
from storage.keys import Keys
from storage.locks import RedisLocks
from storage.redis import create_redis


async def test_claim_is_granted_once(redis: Redis, keys: Keys) -> None:
    locks = RedisLocks(redis=redis, keys=keys)
    results = await asyncio.gather(*(locks.claim("event", "Ev123") for _ in range(20)))
    assert results.count(True) == 1
    assert await locks.claim("event", "Ev456")


async def test_claim_expires(real_redis: Redis, keys: Keys) -> None:
    locks = RedisLocks(redis=real_redis, keys=keys)
    assert await locks.claim("event", "Ev1", ttl=timedelta(milliseconds=100))
    assert not await locks.claim("event", "Ev1", ttl=timedelta(milliseconds=100))
    await asyncio.sleep(0.25)
    assert await locks.claim("event", "Ev1")


async def test_claim_keys_have_ttl(redis: Redis, keys: Keys) -> None:
    locks = RedisLocks(redis=redis, keys=keys)
    await locks.claim("event", "Ev1")
    ttl = await redis.pttl(f"{keys.prefix}:claim:event:Ev1")
    assert 0 < ttl <= 15 * 60 * 1000


async def test_lease_excludes_others_and_fences(redis: Redis, keys: Keys) -> None:
    locks = RedisLocks(redis=redis, keys=keys)
    first = await locks.acquire("leader", ttl=timedelta(seconds=5), holder="a")
    assert first is not None
    assert await locks.acquire("leader", ttl=timedelta(seconds=5), holder="b") is None
    again = await locks.acquire("leader", ttl=timedelta(seconds=5), holder="a")
    assert again is not None and again.token > first.token  # re-entry re-fences
    assert await locks.release(again)
    second = await locks.acquire("leader", ttl=timedelta(seconds=5), holder="b")
    assert second is not None and second.token > again.token


async def test_stolen_lease_cannot_be_renewed_or_released(real_redis: Redis, keys: Keys) -> None:
    locks = RedisLocks(redis=real_redis, keys=keys)
    old = await locks.acquire("leader", ttl=timedelta(milliseconds=150), holder="old")
    assert old is not None
    await asyncio.sleep(0.3)  # old holder stalls past its TTL
    new = await locks.acquire("leader", ttl=timedelta(seconds=5), holder="new")
    assert new is not None and new.token > old.token
    with pytest.raises(LeaseLost):
        await locks.renew(old)
    assert not await locks.release(old)
    assert not await locks.is_current(old)
    assert await locks.is_current(new)  # the new holder is untouched


async def test_holding_renews_past_ttl(redis: Redis, keys: Keys) -> None:
    locks = RedisLocks(redis=redis, keys=keys)
    async with locks.holding("thread:T1", ttl=timedelta(milliseconds=300), timeout=1) as lease:
        await asyncio.sleep(0.7)  # longer than the TTL: renewal keeps it
        assert await locks.is_current(lease)
        assert await locks.acquire("thread:T1", ttl=timedelta(seconds=1), holder="x") is None
    assert not await locks.is_current(lease)  # released on exit


async def test_acquire_wait_serialises_holders(redis: Redis, keys: Keys) -> None:
    locks = RedisLocks(redis=redis, keys=keys)
    order: list[str] = []

    async def worker(name: str) -> None:
        async with locks.holding("thread:T2", ttl=timedelta(seconds=2), timeout=5):
            order.append(f"{name}-in")
            await asyncio.sleep(0.05)
            order.append(f"{name}-out")

    await asyncio.gather(*(worker(str(i)) for i in range(4)))
    for i in range(0, len(order), 2):  # never two inside at once
        assert order[i].endswith("-in") and order[i + 1].endswith("-out")
        assert order[i].split("-")[0] == order[i + 1].split("-")[0]


async def test_acquire_wait_times_out(redis: Redis, keys: Keys) -> None:
    locks = RedisLocks(redis=redis, keys=keys)
    assert await locks.acquire("busy", ttl=timedelta(seconds=5), holder="a")
    with pytest.raises(TimeoutError):
        await locks.acquire_wait("busy", ttl=timedelta(seconds=5), timeout=0.2, holder="b")


async def test_unreachable_redis_is_a_typed_error(keys: Keys) -> None:
    client = create_redis("redis://127.0.0.1:1/0", retries=1, socket_timeout=0.5)
    try:
        with pytest.raises(RedisUnavailable):
            await RedisLocks(redis=client, keys=keys).claim("event", "Ev1")
    finally:
        await client.aclose()
