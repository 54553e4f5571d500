"""Idempotency claims and lease locks with fencing tokens, over core Redis commands.

* A **claim** (``SET key 1 NX PX ttl``) lets exactly one process handle a thing: a Slack
  ``event_id``, a schedule firing. Whoever gets ``True`` owns it; everyone else skips.
* A **lease** is a lock that expires unless renewed. Acquiring one also increments a
  per-name fencing counter, so each holder gets a strictly larger token than the previous
  one; storage that a lease guards can reject writes carrying an older token. Renewal and
  release are compare-and-set Lua scripts, so a holder whose lease was stolen (it expired
  and somebody else took it) can neither extend nor delete the new holder's lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from redis.asyncio import Redis

from storage.errors import LeaseLost
from storage.keys import KeyKind, Keys, ttl_ms
from storage.redis import redis_errors

log = logging.getLogger(f"switchboard.{__name__}")

# KEYS[1]=lease KEYS[2]=fence ARGV[1]=holder ARGV[2]=ttl ms ARGV[3]=fence ttl ms
# Returns the new fencing token, or 0 when someone else holds the lease.
_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, string.len(ARGV[1]) + 1) ~= ARGV[1] .. '|' then
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return token
"""

# KEYS[1]=lease ARGV[1]=expected value ARGV[2]=ttl ms -> 1 renewed, 0 lost
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1]=lease ARGV[1]=expected value -> 1 released, 0 not ours
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Lease:
    """A held lease: ``token`` is the fencing token, larger than any earlier holder's."""

    name: str
    holder: str
    token: int
    ttl: timedelta

    @property
    def value(self) -> str:
        return f"{self.holder}|{self.token}"


class RedisLocks:
    """Claims and leases under one key prefix."""

    def __init__(self, *, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    # -- idempotency claims -------------------------------------------------------------

    async def claim(
        self, scope: str, ident: str, *, ttl: timedelta | None = None, holder: str | None = None
    ) -> bool:
        """True for the first caller of ``(scope, ident)`` within ``ttl``; False afterwards.

        ``holder`` names who claims: the same holder claiming again gets True (a queue job
        re-run after its worker died takes back its own claim instead of waiting out the
        TTL). Without one, every later caller gets False."""
        key = self._keys.key(KeyKind.CLAIM, scope, ident)
        ttl = ttl or self._keys.ttl(KeyKind.CLAIM)
        value = holder.encode() if holder else b"1"
        async with redis_errors("claim"):
            if await self._redis.set(key, value, nx=True, px=ttl_ms(ttl)):
                return True
            return holder is not None and await self._redis.get(key) == value

    async def unclaim(self, scope: str, ident: str) -> None:
        """Give a claim back, e.g. when the work it guarded could not even start."""
        async with redis_errors("unclaim"):
            await self._redis.delete(self._keys.key(KeyKind.CLAIM, scope, ident))

    # -- leases ---------------------------------------------------------------------------

    async def acquire(
        self, name: str, *, ttl: timedelta, holder: str | None = None
    ) -> Lease | None:
        """Take the lease ``name`` if it is free (or already ours); None when held by another."""
        holder = holder or uuid.uuid4().hex
        if "|" in holder:
            raise ValueError("lease holders must not contain '|'")
        fence_ttl = max(ttl, self._keys.ttl(KeyKind.FENCE))
        async with redis_errors("lease acquire"):
            token = await self._redis.eval(
                _ACQUIRE,
                2,
                self._keys.key(KeyKind.LEASE, name),
                self._keys.key(KeyKind.FENCE, name),
                holder,
                ttl_ms(ttl),
                ttl_ms(fence_ttl),
            )
        if not token:
            return None
        return Lease(name=name, holder=holder, token=int(token), ttl=ttl)

    async def acquire_wait(
        self,
        name: str,
        *,
        ttl: timedelta,
        timeout: float,
        holder: str | None = None,
        poll: float = 0.05,
    ) -> Lease:
        """Wait up to ``timeout`` seconds for ``name``; raises :class:`TimeoutError`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = poll
        while True:
            lease = await self.acquire(name, ttl=ttl, holder=holder)
            if lease is not None:
                return lease
            if loop.time() >= deadline:
                raise TimeoutError(f"lease {name!r} still held after {timeout:.1f}s")
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
            delay = min(delay * 2, 0.5)

    async def renew(self, lease: Lease) -> None:
        """Extend ``lease`` by its TTL; raises :class:`LeaseLost` if it is no longer ours."""
        async with redis_errors("lease renew"):
            ok = await self._redis.eval(
                _RENEW, 1, self._keys.key(KeyKind.LEASE, lease.name), lease.value, ttl_ms(lease.ttl)
            )
        if not ok:
            raise LeaseLost(lease.name)

    async def release(self, lease: Lease) -> bool:
        """Release ``lease`` if still ours; False when it had already expired or been taken."""
        async with redis_errors("lease release"):
            released = await self._redis.eval(
                _RELEASE, 1, self._keys.key(KeyKind.LEASE, lease.name), lease.value
            )
        return bool(released)

    async def is_current(self, lease: Lease) -> bool:
        """True while ``lease`` is the live holder (fencing check before a guarded write)."""
        async with redis_errors("lease check"):
            value = await self._redis.get(self._keys.key(KeyKind.LEASE, lease.name))
        if value is None:
            return False
        return (value.decode() if isinstance(value, bytes) else value) == lease.value

    async def held(self, name: str) -> bool:
        """True while somebody holds the lease ``name`` (raises RedisUnavailable)."""
        async with redis_errors("lease check"):
            return bool(await self._redis.exists(self._keys.key(KeyKind.LEASE, name)))

    @contextlib.asynccontextmanager
    async def holding(
        self, name: str, *, ttl: timedelta, timeout: float, holder: str | None = None
    ) -> AsyncIterator[Lease]:
        """Hold ``name`` for the block, renewing it every ``ttl / 3`` in the background.

        If renewal finds the lease lost, the renewer stops and logs it; the block's work
        should use :meth:`is_current` before any write that must not happen twice.
        """
        lease = await self.acquire_wait(name, ttl=ttl, timeout=timeout, holder=holder)
        renewer = asyncio.create_task(self._keep_renewed(lease), name=f"renew:{name}")
        try:
            yield lease
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            with contextlib.suppress(Exception):
                await self.release(lease)

    async def _keep_renewed(self, lease: Lease) -> None:
        interval = max(lease.ttl.total_seconds() / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew(lease)
            except LeaseLost:
                log.warning("lease %s lost while held (token %d)", lease.name, lease.token)
                return
            except Exception:  # a Redis blip: keep trying until the lease expires
                log.warning("lease %s renewal failed; retrying", lease.name, exc_info=True)
