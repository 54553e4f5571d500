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

Slack has no idempotency key for ``chat.postMessage``. A post whose answer was lost (a
500, 502 or 504; the connection closed after the request went out; a timeout) may have
been posted, and making it again blindly posts the answer twice. So every post made here
carries a random key in its message metadata (:data:`POST_EVENT`), the client does not
retry such a failure itself (:func:`~bot.slack.client.acted_on_retries_only`), and the
post goes to the queue to be looked for (``look`` in the payload: how many calls from the
first may have been made): the job first looks for a message with that key in the
channel or thread (``conversations.history`` / ``.replies`` with
``include_all_metadata``) and makes the post only when there is none. A message needed
at once (a placeholder, an approval card) is looked for on the spot (:func:`post_once`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.metrics import Metrics
from bot.slack.client import NEVER_SENT, acted_on_retries_only, no_rate_limit_wait, retry_after
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

#: The ``event_type`` of the metadata each post of :func:`send` carries: its
#: ``event_payload`` holds the post's ``key`` and when it was first tried (``at``).
POST_EVENT = "switchboard_post"

#: When a post whose fate is unknown is looked for (and made if missing) by the
#: ``slack.deliver`` job (seconds): as long as the client's timeout, since Slack may still
#: be at it after a timeout or a gateway's 504.
CHECK_WAIT = 10.0

#: How many pages (200 messages each) since the post a look reads at most.
_LOOKUP_PAGES = 5
#: How far before its own clock's ``at`` a look reads (a worker's clock may be ahead).
_CLOCK_SKEW = 300.0

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


class PostInDoubt(Exception):
    """A post Slack may or may not have made: its answer was lost, and looking for it
    could not tell (:func:`post_once`). ``__cause__`` is the last failure."""


#: What :func:`post_once` raises when its message is not (known to be) posted.
NOT_POSTED = (SlackApiError, PostInDoubt, aiohttp.ClientError, TimeoutError)


def not_posted_reason(exc: BaseException) -> str:
    """One of :data:`NOT_POSTED` for a log line: Slack's error code, else its kind."""
    return error_code(exc) if isinstance(exc, SlackApiError) else type(exc).__name__


class Undelivered(Exception):
    """Slack refused ``calls[0]`` for now; ``calls`` were not made, the ``made`` before
    them were. ``reason`` is what the metric and the log say: ``ratelimited``,
    ``unreachable`` or ``server_error``. ``check``: ``calls[0]`` is a post Slack may have
    made all the same (its answer was lost): look for it before making it again."""

    def __init__(
        self,
        calls: Sequence[SlackCall],
        wait: float,
        *,
        reason: str = "ratelimited",
        made: int = 0,
        check: bool = False,
    ) -> None:
        self.calls = tuple(calls)
        self.wait = wait
        self.reason = reason
        self.made = made
        self.check = check
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
    look: int = 0,
    guess: bool = False,
) -> Mapping[str, Any] | None:
    """Make ``calls`` in order and return Slack's answer to the first one made;
    :class:`Undelivered` with the rest when one is limited (and, given
    ``unreachable_wait``, when Slack cannot be reached or answers a 5xx that may be tried
    again: the rest are due after it). ``progress`` tells how far it got.

    Each post gets a key (:data:`POST_EVENT`) unless it has one. A post Slack may have
    made although its answer was lost is never made again here: it comes back as
    :class:`Undelivered` with ``check``. The first ``look`` calls may have been made
    already (a post in doubt, a job run again): a post among them is looked for first,
    and made only when it is not in Slack. ``guess``: when the look itself is refused, make
    the post rather than come back later (a last attempt: rather twice than never).

    A ``thread_ts`` of :data:`FIRST_MESSAGE` becomes the ts of the first message made, also
    in the calls handed back (the first may be made now and the rest much later)."""
    progress = progress if progress is not None else Progress()
    calls = [_keyed(c) for c in calls]
    first: Mapping[str, Any] | None = None
    for index in range(len(calls)):
        progress.made = index
        progress.rest = tuple(_threaded(c, first) for c in calls[index:])
        call = progress.rest[0]
        keyed = _post_key(call) is not None
        unknown = keyed and index < look  # its fate: still to be looked up
        try:
            answered = None
            if unknown:
                answered = await _posted_already(client, call, guess=guess)
                unknown = False
            if answered is None:
                with acted_on_retries_only() if keyed else contextlib.nullcontext():
                    answered = await _make(client, call)
        except SlackApiError as exc:
            wait = retry_after(exc)
            if wait is not None:
                raise Undelivered(progress.rest, wait, made=index, check=unknown) from exc
            status = http_status(exc)
            if status >= 500 and (unknown or (keyed and status not in _NOT_ACTED_ON)):
                log.warning("slack answered %d to a post: to be looked for, then made", status)
                raise Undelivered(
                    progress.rest, CHECK_WAIT, reason="server_error", made=index, check=True
                ) from exc
            again = call.method == "chat.update" or status in _NOT_ACTED_ON
            if unreachable_wait is not None and status >= 500 and again:
                raise Undelivered(
                    progress.rest, unreachable_wait, reason="server_error", made=index
                ) from exc
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # A connection that never opened took nothing; any other failure may have.
            never_sent = isinstance(exc, NEVER_SENT)
            maybe = unknown or (keyed and not never_sent)
            if unreachable_wait is None and not maybe:
                raise
            log.warning("slack unreachable (%s)", type(exc).__name__)
            raise Undelivered(
                progress.rest,
                CHECK_WAIT if maybe else (unreachable_wait or CHECK_WAIT),
                reason="unreachable",
                made=index,
                check=maybe,
            ) from exc
        first = first or answered
    progress.made, progress.rest = len(calls), ()
    return first


async def post_once(
    client: AsyncWebClient,
    args: Mapping[str, Any],
    *,
    attempts: int = 3,
    pause: float = 2.0,
    before: Callable[[], Awaitable[object]] | None = None,
) -> Mapping[str, Any]:
    """``client.chat_postMessage(**args)`` for a message needed now (a placeholder, an
    approval card), made again after a failure Slack may have acted on only once a look
    finds it is not in Slack (``pause`` seconds later, then longer: Slack may still be at
    it). ``before`` runs before each attempt (a job's fencing check). Raises what
    ``chat_postMessage`` would when it surely was not posted: Slack's error (also a rate
    limit the client's retries did not outlast) or the connection's; and
    :class:`PostInDoubt` when it is still unknown after ``attempts``."""
    calls: Sequence[SlackCall] = [SlackCall("chat.postMessage", dict(args))]
    for attempt in range(attempts):
        if before is not None:
            await before()
        try:
            answered = await send(client, calls, look=int(attempt > 0))
        except Undelivered as exc:
            cause = exc.__cause__  # what Slack (or the connection) said
            if exc.check and attempt + 1 == attempts:
                raise PostInDoubt(f"{exc.reason}: {cause!r}") from cause
            if not exc.check:
                if isinstance(cause, Exception):
                    raise cause from None
                raise
            calls = exc.calls
            await asyncio.sleep(pause * (attempt + 1))
            continue
        assert answered is not None
        return answered
    raise AssertionError("unreachable")  # the loop returns or raises


def _keyed(call: SlackCall) -> SlackCall:
    """``call`` with a key of its own in its metadata, if it is a post without one."""
    if call.method != "chat.postMessage" or call.args.get("metadata"):
        return call
    key = {"key": uuid.uuid4().hex, "at": f"{time.time():.6f}"}  # as Slack writes a ts
    metadata = {"event_type": POST_EVENT, "event_payload": key}
    return SlackCall(call.method, {**call.args, "metadata": metadata})


def _post_key(call: SlackCall) -> Mapping[str, Any] | None:
    """The key of a post made by :func:`send` (None for any other call)."""
    metadata = call.args.get("metadata") if call.method == "chat.postMessage" else None
    if not isinstance(metadata, Mapping) or metadata.get("event_type") != POST_EVENT:
        return None
    payload = metadata.get("event_payload")
    return payload if isinstance(payload, Mapping) and payload.get("key") else None


async def _posted_already(
    client: AsyncWebClient, call: SlackCall, *, guess: bool
) -> Mapping[str, Any] | None:
    """Slack's message for the post ``call`` if it is in Slack, as ``chat.postMessage``
    would have answered; None when it is not, or when it cannot be looked for (the bot
    may not read the conversation, or too much was posted since): then it is made,
    rather than risk losing it. A 429, a 5xx or an unreachable Slack is raised (the look
    is made again later), unless ``guess``."""
    key = _post_key(call)
    assert key is not None
    channel = str(call.args.get("channel", ""))
    try:
        found = await find_post(client, channel, key, thread_ts=call.args.get("thread_ts"))
    except SlackApiError as exc:
        if not guess and (retry_after(exc) is not None or http_status(exc) >= 500):
            raise
        log.warning("could not look for a post that may be in slack (%s)", error_code(exc))
        return None
    except (aiohttp.ClientError, TimeoutError, OSError):
        if not guess:
            raise
        log.warning("could not look for a post that may be in slack (unreachable)")
        return None
    if found is not None:
        log.info("a post slack took although its answer was lost is not made again")
    return found


async def find_post(
    client: AsyncWebClient, channel: str, key: Mapping[str, Any], *, thread_ts: Any = None
) -> Mapping[str, Any] | None:
    """The message carrying ``key`` (:data:`POST_EVENT`) in ``thread_ts``'s thread or on
    ``channel``'s top level, as ``{"channel", "ts", "message"}``; None when there is none
    (or none in the :data:`_LOOKUP_PAGES` pages posted since: logged). ``channel`` may be
    a user id (a DM). Messages from before the key's ``at``, less :data:`_CLOCK_SKEW`,
    are not read."""
    with no_rate_limit_wait():
        if channel[:1] in ("U", "W"):
            opened = await client.conversations_open(users=channel)
            channel = str((opened.get("channel") or {}).get("id", channel))
        oldest = f"{max(float(key.get('at') or 0) - _CLOCK_SKEW, 0):.6f}"
        in_thread = bool(thread_ts) and thread_ts != FIRST_MESSAGE
        read = (
            functools.partial(client.conversations_replies, ts=str(thread_ts))
            if in_thread
            else client.conversations_history
        )
        cursor: str | None = None
        for _ in range(_LOOKUP_PAGES):
            answer = await read(
                channel=channel, oldest=oldest, limit=200, cursor=cursor, include_all_metadata=True
            )
            for message in answer.get("messages") or []:
                metadata = message.get("metadata") or {}
                payload = metadata.get("event_payload") or {}
                if metadata.get("event_type") == POST_EVENT and payload.get("key") == key["key"]:
                    return {"channel": channel, "ts": str(message["ts"]), "message": message}
            cursor = str((answer.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                return None
    log.warning("post not found in %d pages of %s: made again", _LOOKUP_PAGES, channel)
    return None


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
        look: int = 0,
    ) -> None:
        """Queue ``undelivered``'s calls for when Slack takes them again (plus jitter, so
        answers limited together do not come back together). ``tell`` is a user and a
        message for their DM if nothing of the answer can be posted after all (a scheduled
        answer's owner: nobody else would know). Raises
        :class:`~storage.errors.StorageError` when the queue cannot take them. ``look``:
        how many of the calls may have been made already (a job run again after a crash),
        to be looked for before they are made."""
        if self.metrics is not None:  # each refusal the client's retries did not outlast
            self.metrics.slack_api_errors.labels(
                method=undelivered.calls[0].method, error=undelivered.reason
            ).inc()
        # keyed now, so that every attempt of the job (a re-run too) posts with one key
        keyed = [_keyed(c) for c in undelivered.calls]
        calls = [{"method": c.method, "args": dict(c.args)} for c in keyed]
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
            # how many calls (from the first) may have been made: looked for before made
            "look": max(look - undelivered.made, int(undelivered.check)),
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
        # a post in doubt; or, in a job run again, any post it may have made
        look = len(calls) if job.attempt else int(payload.get("look") or 0)
        await job.check()
        try:
            with no_rate_limit_wait():
                await send(
                    self.client,
                    calls,
                    unreachable_wait=5.0,
                    progress=progress,
                    look=look,
                    guess=attempt + 1 >= self.max_attempts,
                )
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
                look=look,
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
                await self._tell_owner(tell)
            elif channel.startswith("D"):  # a DM's answer goes on its top level
                text = REST_DROPPED_TEXT if started else DROPPED_TEXT
                await self.client.chat_postMessage(channel=channel, text=text)

    async def _tell_owner(self, tell: tuple[str, str]) -> None:
        """DM ``tell``'s person its text; when Slack refuses it for now (the same storm
        that dropped the answer, likely), as a delivery of its own, so that it is not lost
        too (without a ``tell``: nobody is told of a dropped notice)."""
        user, text = tell
        try:
            dm = SlackCall("chat.postMessage", {"channel": user, "text": text})
            await send(self.client, [dm], unreachable_wait=CHECK_WAIT)
        except Undelivered as exc:
            try:
                await self.later(exc, thread=f"dm:{user}", channel=user, placeholder_ts=None)
            except StorageError as error:
                log.error("owner not told of a dropped answer: %s", error)


def _updates(calls: Sequence[SlackCall], placeholder_ts: str | None) -> bool:
    """Whether ``calls`` still hold the placeholder's update (the answer's start)."""
    return bool(placeholder_ts) and any(
        c.method == "chat.update" and c.args.get("ts") == placeholder_ts for c in calls
    )


def _reply_in(calls: Sequence[SlackCall]) -> str | None:
    """The thread the answer's further messages go to, once it is known."""
    threads = (c.args.get("thread_ts") for c in calls)
    return next((str(t) for t in threads if t and t != FIRST_MESSAGE), None)
