"""Change notifications between replicas, over Redis pub/sub.

A replica that adds, pauses, resumes, deletes or asks to run a schedule publishes
``changed <id>``; the leader reloads that schedule at once (the channel and the message
format are :mod:`storage.keys`'s). A leader that steps down
publishes ``released`` so a standby takes over without waiting for the lease to expire.
Pub/sub is fire-and-forget: the leader's periodic full resync catches anything missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from storage.errors import RedisUnavailable
from storage.keys import Keys, ScheduleChange, parse_schedule_change, schedule_change
from storage.redis import TRANSIENT_ERRORS, redis_errors

log = logging.getLogger(f"switchboard.{__name__}")

CHANGED = ScheduleChange.CHANGED.value
RELEASED = ScheduleChange.RELEASED.value


class ChangeFeed:
    """Publishes and receives ``(kind, ident)`` notifications on one channel."""

    def __init__(self, *, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self.channel = keys.schedule_changes()

    async def publish(self, kind: str, ident: str = "") -> None:
        """Publish; a Redis outage is logged, not raised (the resync is the safety net)."""
        try:
            async with redis_errors("schedule notification"):
                await self._redis.publish(self.channel, schedule_change(kind, ident))
        except RedisUnavailable:
            log.warning(
                "schedule change %s %s not published; the next resync picks it up", kind, ident
            )

    async def listen(
        self, *, ready: asyncio.Event | None = None, retry: float = 0.5
    ) -> AsyncIterator[tuple[str, str]]:
        """Notifications as they arrive, forever; reconnects after Redis errors.

        ``ready`` is set each time the subscription is live.
        """
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if ready is not None:
                    ready.set()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    data = message.get("data")
                    text = data.decode() if isinstance(data, bytes) else str(data)
                    yield parse_schedule_change(text)
            except TRANSIENT_ERRORS as exc:
                log.warning(
                    "schedule notifications interrupted (%s); resubscribing", type(exc).__name__
                )
                if ready is not None:
                    ready.clear()
                await asyncio.sleep(retry)
            finally:
                with contextlib.suppress(*TRANSIENT_ERRORS):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
