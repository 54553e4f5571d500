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

import contextlib
import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.metrics import Metrics
from bot.slack.client import no_rate_limit_wait, retry_after
from storage.errors import StorageError
from storage.runqueue import JobInfo, Retryable, RunQueue

log = logging.getLogger(f"switchboard.{__name__}")

DELIVER_KIND = "slack.deliver"

#: The longest wait a ``Retry-After`` may ask for (seconds): Slack's are a minute or less;
#: a larger one (a proxy's, a garbled header) must not park an answer for days.
MAX_DELAY = 600.0

#: A ``thread_ts`` that stands for the first message of the same delivery: an answer split
#: in chunks on a channel's top level (a scheduled firing's) puts the later chunks in the
#: first one's thread, whose ts exists only once it is posted.
FIRST_MESSAGE = "<first message>"

DROPPED_TEXT = (
    "Sorry — Slack kept refusing my answer (it was rate-limiting this workspace), so I "
    "couldn't post it. Please ask again."
)
#: Said in the thread when the answer's start is posted but its rest could not be.
REST_DROPPED_TEXT = (
    "Sorry — Slack kept refusing the rest of this answer, so it is cut short. Please ask "
    "again for the rest."
)


class Sealer(Protocol):
    def seal(self, text: str) -> str: ...
    def unseal(self, sealed: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class SlackCall:
    """One Web API call that posts (``chat.update`` / ``chat.postMessage``)."""

    method: str
    args: Mapping[str, Any]


class Undelivered(Exception):
    """Slack refused ``calls[0]`` for now; ``calls`` were not made, the ``made`` before
    them were. ``reason`` is what the metric and the log say: ``ratelimited``,
    ``unreachable`` or ``server_error``."""

    def __init__(
        self,
        calls: Sequence[SlackCall],
        wait: float,
        *,
        reason: str = "ratelimited",
        made: int = 0,
    ) -> None:
        self.calls = tuple(calls)
        self.wait = wait
        self.reason = reason
        self.made = made
        super().__init__(f"{calls[0].method} {reason}; {len(calls)} call(s) not made")


@dataclass(slots=True)
class Progress:
    """How far :func:`send` got, also when it raised: ``made`` calls, and the ``rest`` as
    they read now (a :data:`FIRST_MESSAGE` resolved once the first message is made)."""

    made: int = 0
    rest: tuple[SlackCall, ...] = ()


#: 5xx answers after which a call is made again: Slack did not act on it. A
#: ``chat.update`` may always be made again; a ``chat.postMessage`` that met a 500 or a
#: gateway's 502/504 may have been posted, and making it again would post it twice.
_NOT_ACTED_ON = frozenset({503})


async def send(
    client: AsyncWebClient,
    calls: Sequence[SlackCall],
    *,
    unreachable_wait: float | None = None,
    progress: Progress | None = None,
) -> Mapping[str, Any] | None:
    """Make ``calls`` in order and return Slack's answer to the first one made;
    :class:`Undelivered` with the rest when one is limited (and, given
    ``unreachable_wait``, when Slack cannot be reached or answers a 5xx that may be tried
    again: the rest are due after it). ``progress`` tells how far it got.

    A ``thread_ts`` of :data:`FIRST_MESSAGE` becomes the ts of the first message made, also
    in the calls handed back (the first may be made now and the rest much later)."""
    progress = progress if progress is not None else Progress()
    first: Mapping[str, Any] | None = None
    for index, call in enumerate(calls):
        progress.made = index
        progress.rest = tuple(_threaded(c, first) for c in calls[index:])
        try:
            answered = await _make(client, progress.rest[0])
        except SlackApiError as exc:
            wait = retry_after(exc)
            if wait is not None:
                raise Undelivered(progress.rest, wait, made=index) from exc
            status = http_status(exc)
            again = call.method == "chat.update" or status in _NOT_ACTED_ON
            if unreachable_wait is not None and status >= 500 and again:
                raise Undelivered(
                    progress.rest, unreachable_wait, reason="server_error", made=index
                ) from exc
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if unreachable_wait is None:
                raise
            log.warning("slack unreachable (%s)", type(exc).__name__)
            raise Undelivered(
                progress.rest, unreachable_wait, reason="unreachable", made=index
            ) from exc
        first = first or answered
    progress.made, progress.rest = len(calls), ()
    return first


def http_status(exc: SlackApiError) -> int:
    """The HTTP status of a refused call (slack_sdk hands over the raw aiohttp response
    when a body that says it is JSON is not)."""
    response = exc.response
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    return int(status) if isinstance(status, int) else 0


def error_code(exc: SlackApiError) -> str:
    """Slack's error code (``channel_not_found``), or ``http_<status>`` without one."""
    get = getattr(exc.response, "get", None)
    code = get("error") if callable(get) else None
    return str(code) if code else f"http_{http_status(exc)}"


def _threaded(call: SlackCall, first: Mapping[str, Any] | None) -> SlackCall:
    if first is None or call.args.get("thread_ts") != FIRST_MESSAGE:
        return call
    return SlackCall(call.method, {**call.args, "thread_ts": str(first["ts"])})


async def _make(client: AsyncWebClient, call: SlackCall) -> Mapping[str, Any]:
    # As slack_sdk's own chat_* methods send it: JSON, without the unset fields.
    args = {k: v for k, v in call.args.items() if v is not None}
    response = await client.api_call(call.method, json=args)
    return dict(response.data) if isinstance(response.data, dict) else {}


class Deliveries:
    """Defers undelivered calls to the run queue and makes them when their job runs.

    A job makes its calls in order and never makes one twice: when a call fails (limited
    again, Slack unreachable) only the calls from that one on are queued again, as a new
    job of a higher priority (``attempt``), so the thread's later deliveries still wait
    behind it (the queue holds a lock's jobs back behind any of higher priority). What
    can no longer be delivered replaces the placeholder with :data:`DROPPED_TEXT`.
    """

    def __init__(
        self,
        *,
        queue: RunQueue,
        client: AsyncWebClient,
        sealer: Sealer,
        metrics: Metrics | None = None,
        max_attempts: int = 20,
    ) -> None:
        self.queue = queue
        self.client = client
        self.sealer = sealer
        self.metrics = metrics
        self.max_attempts = max_attempts

    async def later(
        self,
        undelivered: Undelivered,
        *,
        thread: str,
        channel: str,
        placeholder_ts: str | None,
        attempt: int = 0,
        started: bool = False,
        tell: tuple[str, str] | None = None,
    ) -> None:
        """Queue ``undelivered``'s calls for when Slack takes them again (plus jitter, so
        answers limited together do not come back together). ``tell`` is a user and a
        message for their DM if nothing of the answer can be posted after all (a scheduled
        answer's owner: nobody else would know). Raises
        :class:`~storage.errors.StorageError` when the queue cannot take them."""
        if self.metrics is not None:  # each refusal the client's retries did not outlast
            self.metrics.slack_api_errors.labels(
                method=undelivered.calls[0].method, error=undelivered.reason
            ).inc()
        calls = [{"method": c.method, "args": dict(c.args)} for c in undelivered.calls]
        wait = min(undelivered.wait, MAX_DELAY)
        delay = wait + random.uniform(0, 1 + wait / 10)
        pending = _updates(undelivered.calls, placeholder_ts)
        payload = {
            "thread": thread,
            "attempt": attempt,
            # Where to say so if it cannot be delivered (not sensitive: ids, not text): the
            # placeholder while its update is still to be made, else the answer's thread.
            "channel": channel,
            "placeholder_ts": placeholder_ts if pending else None,
            "reply_in": _reply_in(undelivered.calls),
            # part of the answer is in Slack already (then only its rest is dropped)
            "started": started or undelivered.made > 0 or bool(placeholder_ts and not pending),
            "calls": self.sealer.seal(json.dumps(calls)),
        }
        if tell is not None:
            payload["tell"] = {"user": tell[0], "text": self.sealer.seal(tell[1])}
        await self.queue.defer(
            DELIVER_KIND,
            payload,
            lock=f"deliver:{thread}",
            delay=timedelta(seconds=delay),
            priority=attempt,
        )
        log.warning(
            "answer deferred: slack %s",
            "rate limited" if undelivered.reason == "ratelimited" else undelivered.reason,
            extra={"thread_key": thread, "calls": len(calls), "retry_in": round(delay, 1)},
        )

    async def handle(self, payload: Mapping[str, Any], job: JobInfo) -> None:
        """The ``slack.deliver`` job: make the calls; on a failure, queue the rest.

        The calls are made without waiting out a 429 in the client (the queue does the
        waiting, as a delayed job): an attempt is short, so a drain on SIGTERM rarely
        interrupts one half-way (a handed-back job makes its calls again from the first)."""
        thread, attempt = str(payload.get("thread", "")), int(payload.get("attempt", 0))
        placeholder_ts = payload.get("placeholder_ts")
        opened = self.sealer.unseal(str(payload.get("calls", "")))
        if opened is None:  # the key changed since (see PayloadSealer)
            log.error("deferred answer unreadable; dropped", extra={"thread_key": thread})
            await self._dropped(payload, started=bool(payload.get("started")))
            return
        calls = [SlackCall(str(c["method"]), dict(c["args"])) for c in json.loads(opened)]
        # A job queued before ``started`` was stored kept the placeholder after its update.
        started = bool(payload.get("started")) or bool(
            placeholder_ts and not _updates(calls, placeholder_ts)
        )
        progress = Progress()
        await job.check()
        try:
            with no_rate_limit_wait():
                await send(self.client, calls, unreachable_wait=5.0, progress=progress)
        except Undelivered as exc:
            rest = exc
        except SlackApiError as exc:  # the thread was deleted, the bot removed from it…
            log.error(
                "deferred answer not delivered: %s", error_code(exc), extra={"thread_key": thread}
            )
            await self._dropped(payload, started=started or progress.made > 0, rest=progress.rest)
            return
        else:
            log.info("deferred answer delivered", extra={"thread_key": thread})
            return
        if attempt + 1 >= self.max_attempts:
            log.error(
                "deferred answer dropped: still refused after %d attempts",
                attempt + 1,
                extra={"thread_key": thread},
            )
            await self._dropped(payload, started=started or rest.made > 0, rest=rest.calls)
            return
        try:
            await self.later(
                rest,
                thread=thread,
                channel=str(payload.get("channel", "")),
                placeholder_ts=placeholder_ts,
                attempt=attempt + 1,
                started=started,
                tell=self._tell(payload),
            )
        except StorageError as exc:
            if not rest.made and not job.final_attempt:  # this job may run again as it is
                raise Retryable(f"deferred answer not queued again: {exc}") from exc
            log.error("deferred answer dropped: %s", exc, extra={"thread_key": thread})
            await self._dropped(payload, started=started or rest.made > 0, rest=rest.calls)

    def _tell(self, payload: Mapping[str, Any]) -> tuple[str, str] | None:
        tell = payload.get("tell")
        if not isinstance(tell, Mapping):
            return None
        text = self.sealer.unseal(str(tell.get("text", "")))
        return (str(tell.get("user", "")), text) if text is not None else None

    async def _dropped(
        self, payload: Mapping[str, Any], *, started: bool, rest: Sequence[SlackCall] = ()
    ) -> None:
        """Say so, so that "Working on it…" does not stay for good: in the placeholder
        while nothing of the answer is in it, else in the answer's thread (``started``:
        part of the answer is in Slack; ``rest``: the calls not made, which name the thread
        once its first message is made), else, in a DM, below the answer. A scheduled
        answer nothing of which was posted is told to its owner (``tell``), in their DM.
        Said without waiting out a rate limit, so it may not get through either."""
        channel, ts = str(payload.get("channel") or ""), payload.get("placeholder_ts")
        reply_in = _reply_in(rest) or payload.get("reply_in")
        tell = self._tell(payload) if not started else None
        if not channel and tell is None:
            return
        unreachable = (SlackApiError, aiohttp.ClientError, TimeoutError, OSError)
        with contextlib.suppress(*unreachable), no_rate_limit_wait():
            if ts and not started:
                await self.client.chat_update(
                    channel=channel, ts=str(ts), text=DROPPED_TEXT, blocks=[]
                )
            elif reply_in:
                text = REST_DROPPED_TEXT if started else DROPPED_TEXT
                await self.client.chat_postMessage(
                    channel=channel, thread_ts=str(reply_in), text=text
                )
            elif tell is not None:
                await self.client.chat_postMessage(channel=tell[0], text=tell[1])
            elif channel.startswith("D"):  # a DM's answer goes on its top level
                text = REST_DROPPED_TEXT if started else DROPPED_TEXT
                await self.client.chat_postMessage(channel=channel, text=text)


def _updates(calls: Sequence[SlackCall], placeholder_ts: str | None) -> bool:
    """Whether ``calls`` still hold the placeholder's update (the answer's start)."""
    return bool(placeholder_ts) and any(
        c.method == "chat.update" and c.args.get("ts") == placeholder_ts for c in calls
    )


def _reply_in(calls: Sequence[SlackCall]) -> str | None:
    """The thread the answer's further messages go to, once it is known."""
    threads = (c.args.get("thread_ts") for c in calls)
    return next((str(t) for t in threads if t and t != FIRST_MESSAGE), None)
