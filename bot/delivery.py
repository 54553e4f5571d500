"""Answers that Slack would not take yet are delivered later from the run queue, never
dropped.

A worker's Web API client waits out a 429 (``Retry-After``) a dozen times, but not a
``Retry-After`` longer than its cap, and not a storm longer than its budget. An answer
whose post still fails with ``ratelimited`` used to be lost: the thread kept its "Working
on it…" placeholder for good, and the error message could not be posted either (it is the
same ``chat.update``). Now the calls not yet made (the placeholder's update, the answer's
further chunks) become a ``slack.deliver`` job, due when Slack said to come back, run by
any worker; a job that is limited again comes back later, up to ``max_attempts`` times.

The calls are stored sealed (:class:`~bot.queueing.PayloadSealer`: they hold the answer's
text). Jobs of one thread share a queue lock, so they run one at a time, in order.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.status import retry_after
from storage.runqueue import JobInfo, RunQueue

log = logging.getLogger(f"switchboard.{__name__}")

DELIVER_KIND = "slack.deliver"

#: The longest wait a ``Retry-After`` may ask for (seconds): Slack's are a minute or less;
#: a larger one (a proxy's, a garbled header) must not park an answer for days.
MAX_DELAY = 600.0


class Sealer(Protocol):
    def seal(self, text: str) -> str: ...
    def unseal(self, sealed: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class SlackCall:
    """One Web API call that posts (``chat.update`` / ``chat.postMessage``)."""

    method: str
    args: Mapping[str, Any]


class Undelivered(Exception):
    """Slack answered ``ratelimited`` to ``calls[0]``; ``calls`` were not made."""

    def __init__(self, calls: Sequence[SlackCall], wait: float) -> None:
        self.calls = tuple(calls)
        self.wait = wait
        super().__init__(f"{calls[0].method} rate limited; {len(calls)} call(s) not made")


async def send(client: AsyncWebClient, calls: Sequence[SlackCall]) -> None:
    """Make ``calls`` in order; :class:`Undelivered` with the rest when one is limited."""
    for index, call in enumerate(calls):
        try:
            # As slack_sdk's own chat_* methods send it: JSON, without the unset fields.
            args = {k: v for k, v in call.args.items() if v is not None}
            await client.api_call(call.method, json=args)
        except SlackApiError as exc:
            wait = retry_after(exc)
            if wait is None:
                raise
            raise Undelivered(calls[index:], wait) from exc


class Deliveries:
    """Defers undelivered calls to the run queue and makes them when their job runs."""

    def __init__(
        self,
        *,
        queue: RunQueue,
        client: AsyncWebClient,
        sealer: Sealer,
        max_attempts: int = 20,
    ) -> None:
        self.queue = queue
        self.client = client
        self.sealer = sealer
        self.max_attempts = max_attempts

    async def later(self, undelivered: Undelivered, *, thread: str, attempt: int = 0) -> None:
        """Queue ``undelivered``'s calls for when Slack takes them again (plus jitter, so
        answers limited together do not come back together)."""
        calls = [{"method": c.method, "args": dict(c.args)} for c in undelivered.calls]
        wait = min(undelivered.wait, MAX_DELAY)
        delay = wait + random.uniform(0, 1 + wait / 10)
        await self.queue.defer(
            DELIVER_KIND,
            {"thread": thread, "attempt": attempt, "calls": self.sealer.seal(json.dumps(calls))},
            lock=f"deliver:{thread}",
            delay=timedelta(seconds=delay),
        )
        log.warning(
            "answer deferred: slack rate limited",
            extra={"thread_key": thread, "calls": len(calls), "retry_in": round(delay, 1)},
        )

    async def handle(self, payload: Mapping[str, Any], job: JobInfo) -> None:
        """The ``slack.deliver`` job: make the calls; limited again, queue the rest."""
        thread, attempt = str(payload.get("thread", "")), int(payload.get("attempt", 0))
        opened = self.sealer.unseal(str(payload.get("calls", "")))
        if opened is None:  # the key changed since (see PayloadSealer)
            log.error("deferred answer unreadable; dropped", extra={"thread_key": thread})
            return
        calls = [SlackCall(str(c["method"]), dict(c["args"])) for c in json.loads(opened)]
        await job.check()
        try:
            await send(self.client, calls)
        except Undelivered as exc:
            if attempt + 1 >= self.max_attempts:
                log.error(
                    "deferred answer dropped: still rate limited after %d attempts",
                    attempt + 1,
                    extra={"thread_key": thread},
                )
                return
            await self.later(exc, thread=thread, attempt=attempt + 1)
        except SlackApiError as exc:  # the thread was deleted, the bot removed…
            log.error(
                "deferred answer not delivered: %s",
                exc.response.get("error"),
                extra={"thread_key": thread},
            )
        else:
            log.info("deferred answer delivered", extra={"thread_key": thread})
