"""Leadership: the Redis lease ``scheduler``, its renewal and its terms.

Exactly one replica holds the lease; it renews every ``ttl / 3``. When a renewal finds the
lease taken, or Redis has been unreachable for a whole TTL, :attr:`Leadership.lost` is set
and the leader stops at once. Each term's fencing token is written on its run records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from scheduler.feed import RELEASED, ChangeFeed
from storage.errors import LeaseLost, RedisUnavailable
from storage.locks import Lease, RedisLocks

log = logging.getLogger(f"switchboard.{__name__}")


@dataclass(frozen=True, slots=True)
class LeaderTerm:
    """One period of leadership, for logs, metrics and tests."""

    holder: str
    token: int
    started: float  # time.time()
    ended: float | None = None


class Leadership:
    """This replica's side of the election: try, hold, check and give up the lease."""

    def __init__(
        self,
        *,
        locks: RedisLocks,
        feed: ChangeFeed,
        holder: str,
        name: str,
        ttl: timedelta,
    ) -> None:
        self._locks = locks
        self._feed = feed
        self.holder = holder
        self._name = name
        self._ttl = ttl
        self.lease: Lease | None = None
        self.terms: list[LeaderTerm] = []
        #: Set when the lease was lost (taken, or Redis gone for a whole TTL).
        self.lost = asyncio.Event()

    @property
    def token(self) -> int | None:
        """The fencing token of the current term, if any."""
        return self.lease.token if self.lease is not None else None

    async def acquire(self) -> Lease | None:
        """The lease if it is free (None when taken or Redis is unreachable)."""
        try:
            return await self._locks.acquire(self._name, ttl=self._ttl, holder=self.holder)
        except RedisUnavailable:
            return None

    def begin(self, lease: Lease) -> LeaderTerm:
        """Hold ``lease``; the term counts once :meth:`record` is called."""
        log.info("scheduler leader: %s (token %d)", self.holder, lease.token)
        self.lost.clear()
        self.lease = lease
        return LeaderTerm(holder=self.holder, token=lease.token, started=time.time())

    def record(self, term: LeaderTerm) -> None:
        self.terms.append(term)

    async def keep(self, lease: Lease) -> None:
        """Renew ``lease`` until it is lost (then set :attr:`lost` and return)."""
        interval = max(lease.ttl.total_seconds() / 3, 0.05)
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            try:
                await self._locks.renew(lease)
                last_ok = time.monotonic()
            except LeaseLost:
                log.warning("scheduler lease lost (token %d); stepping down", lease.token)
                self.lost.set()
                return
            except RedisUnavailable:
                if time.monotonic() - last_ok >= lease.ttl.total_seconds():
                    log.warning("Redis unreachable for a whole lease; stepping down")
                    self.lost.set()
                    return

    async def still_leader(self, *, strict: bool = False) -> bool:
        """True while our lease is current; ``strict`` raises on a Redis error (retry)."""
        lease = self.lease
        if lease is None or self.lost.is_set():
            return False
        try:
            return await self._locks.is_current(lease)
        except RedisUnavailable:
            if strict:
                raise
            return False

    async def holds(self, lease: Lease) -> bool:
        """Whether ``lease`` is still ours (raises RedisUnavailable)."""
        return await self._locks.is_current(lease)

    async def end(self, lease: Lease, term: LeaderTerm) -> None:
        """Close the term and release the lease, announcing it so a standby takes over."""
        self.lease = None
        if self.terms and self.terms[-1] is term:
            self.terms[-1] = LeaderTerm(
                holder=term.holder, token=term.token, started=term.started, ended=time.time()
            )
        released = False
        with contextlib.suppress(Exception):
            released = await self._locks.release(lease)
        if released:
            await self._feed.publish(RELEASED, self.holder)
        log.info("scheduler leader %s stepped down", self.holder)
