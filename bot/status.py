"""The sign that an answer is on its way: the ⏳ reaction on the person's message, or the
Assistant panel's "is thinking…" status.

It is cosmetic, so it never costs the answer anything:

- Showing it never waits out a rate limit (:func:`~bot.slack.client.no_rate_limit_wait`).
  ``reactions.add`` is a Tier 3 method (about 50 calls a minute per workspace): in a burst
  of mentions most of them are answered 429, and waiting each one out would hold every
  turn back by its ``Retry-After`` before it even starts.
- After a 429, the method is not called again until its ``Retry-After`` has passed (a
  burst costs Slack one refused call per window, not one per message).
- Taking it away runs in the background, after the answer is posted: ``reactions.remove``
  is Tier 2 (about 20 a minute), and a turn waiting for it would keep its worker slot and
  its thread's next message waiting too. A removal may wait out rate limits (a ⏳ left on
  an answered message says "still working"), for at most ``clear_within`` seconds (inside
  a worker's drain on SIGTERM); at most ``max_pending`` wait at once. Past either, the ⏳
  stays and a log line says so.
- A sign that was never shown is never taken away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.client import no_rate_limit_wait, retry_after
from bot.worker import Worker

log = logging.getLogger(f"switchboard.{__name__}")

THINKING_REACTION = "hourglass_flowing_sand"
THINKING_STATUS = "is thinking…"


class Where(Protocol):
    """What the sign needs of a message (an ``Inbound``)."""

    @property
    def kind(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def reply_thread_ts(self) -> str | None: ...
    @property
    def message_ts(self) -> str | None: ...


class WorkStatus:
    """Shows and clears the sign over ``client``; removals run as ``worker`` tasks (so a
    drain or ``idle`` waits for them)."""

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        worker: Worker,
        max_pending: int = 64,
        clear_within: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.worker = worker
        self.max_pending = max_pending
        self.clear_within = clear_within
        self._clock = clock
        self._blocked: dict[str, float] = {}  # Web API method -> when Slack takes it again
        self._pending = 0

    async def show(self, where: Where) -> bool:
        """Show the sign; True when it is shown (and so must be cleared)."""
        call = self._call(where, on=True)
        if call is None or self._clock() < self._blocked.get(call.method, 0.0):
            return False
        with no_rate_limit_wait():
            return await self._send(call)

    def clear(self, where: Where, *, shown: bool) -> None:
        """Take the sign away in the background (nothing to do when it was not shown)."""
        call = self._call(where, on=False) if shown else None
        if call is None:
            return
        if self._pending >= self.max_pending:
            log.info("status not cleared: %d removals already waiting", self._pending)
            return
        self._pending += 1
        self.worker.spawn(self._clear(call), name=f"status-clear:{where.channel}")

    async def _clear(self, call: _Call) -> None:
        try:
            wait = self._blocked.get(call.method, 0.0) - self._clock()
            if wait >= self.clear_within:  # Slack said to come back later than we wait
                raise TimeoutError
            async with asyncio.timeout(self.clear_within):
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._send(call)
        except TimeoutError:
            log.info("status not cleared within %g s: %s", self.clear_within, call.method)
        finally:
            self._pending -= 1

    async def _send(self, call: _Call) -> bool:
        try:
            await call.send(**call.kwargs)
        except SlackApiError as exc:
            wait = retry_after(exc)
            if wait is not None:
                self._blocked[call.method] = self._clock() + wait
            log.info("status update skipped: %s %s", call.method, exc.response.get("error"))
            return False
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:  # Slack unreachable
            log.info("status update skipped: %s %s", call.method, type(exc).__name__)
            return False
        return True

    def _call(self, where: Where, *, on: bool) -> _Call | None:
        client = self.client
        if where.kind == "assistant" and where.reply_thread_ts:
            return _Call(
                "assistant.threads.setStatus",
                client.assistant_threads_setStatus,
                {
                    "channel_id": where.channel,
                    "thread_ts": where.reply_thread_ts,
                    "status": THINKING_STATUS if on else "",
                },
            )
        if where.message_ts is not None:
            return _Call(
                "reactions.add" if on else "reactions.remove",
                client.reactions_add if on else client.reactions_remove,
                {
                    "channel": where.channel,
                    "timestamp": where.message_ts,
                    "name": THINKING_REACTION,
                },
            )
        return None


class _Call:
    """One Web API call: its method name (for the rate-limit window), the client's bound
    method, and its arguments."""

    __slots__ = ("kwargs", "method", "send")

    def __init__(
        self, method: str, send: Callable[..., Awaitable[Any]], kwargs: dict[str, Any]
    ) -> None:
        self.method = method
        self.send = send
        self.kwargs = kwargs
