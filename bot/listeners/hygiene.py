"""Global middleware: deduplicate events across retries and replicas, count requests.

Slack retries an event it thinks was not acked (``X-Slack-Retry-Num``) and, with several
replicas, may deliver it to another one. The first replica to claim the ``event_id`` in
Redis handles it; every other delivery is acked and dropped. A retry is never dropped
*because* it is a retry: if the first delivery never reached us, the retry is the first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse

from bot.listeners._context import BotContext
from storage.errors import RedisUnavailable

log = logging.getLogger(f"switchboard.{__name__}")

EVENT_CLAIM_TTL = timedelta(minutes=15)


def request_type(body: dict[str, Any]) -> str:
    kind = str(body.get("type") or ("slash_command" if "command" in body else "unknown"))
    if kind == "event_callback":
        return "event:" + str((body.get("event") or {}).get("type", "unknown"))
    return kind


def register(app: AsyncApp, bot: BotContext) -> None:
    @app.middleware
    async def deduplicate(
        body: dict[str, Any], next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id:
            try:
                first = await bot.locks.claim("event", str(event_id), ttl=EVENT_CLAIM_TTL)
            except RedisUnavailable:
                # Better a rare duplicate answer than a lost one while Redis blips.
                log.warning("event %s handled without dedupe: Redis unavailable", event_id)
                first = True
            if not first:
                log.info("duplicate delivery of event %s ignored", event_id)
                bot.metrics.requests.labels(type=request_type(body), outcome="duplicate").inc()
                return BoltResponse(status=200, body="")
        await next()
        return None
