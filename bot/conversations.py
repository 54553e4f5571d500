"""Answering a message: admission, status, run the skill, render the outcome, map errors.

Listeners only parse, authorize and ack; they hand an :class:`Inbound` to
:meth:`Conversations.submit`, which admits it (the person's and the channel's rate limits,
the worker's capacity) and runs :meth:`Conversations.answer` in the background.

No answer slot is held here: the runtime takes the thread's lease first and only then one
of its ``max_concurrent_runs`` slots, so a message waiting for its thread (up to
``thread_wait_timeout``) never keeps another thread's message from running. What bounds a
burst is the worker's cap on tasks in flight.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.access import SlackConversationAccess
from bot.delivery import Deliveries, SlackCall, Undelivered, send
from bot.directory import Directory
from bot.metrics import Metrics
from bot.slack.client import no_rate_limit_wait
from bot.status import WorkStatus
from bot.views import blocks as views
from bot.views import runs as views_runs
from bot.views.text import LinkPolicy, defang_links, escape_mrkdwn
from bot.worker import Worker, WorkerBusy
from skills.context import SlackReader, ThreadRef
from skills.errors import RunFailed, SkillError, ThreadBusy
from skills.models import ModelConfigError
from skills.outcomes import ApprovalRequest, Outcome, Refusal, Reply
from skills.pii import mask_text, strip_token_ids
from skills.runtime import Runtime
from storage.errors import DatabaseUnavailable, StorageError
from storage.locks import RedisLocks
from storage.ratelimit import Rate, RateLimiter
from storage.runqueue import Retryable, Superseded
from storage.transient import is_transient

if TYPE_CHECKING:
    from bot.queueing import Enqueuer

log = logging.getLogger(f"switchboard.{__name__}")

InboundKind = Literal["mention", "dm", "thread", "assistant", "command"]

BUSY_TEXT = (
    "I'm answering too many requests right now and couldn't take this one. "
    "Please try again in a minute."
)


def rate_limited_text(wait_seconds: float) -> str:
    return (
        "You're sending requests faster than I can answer; "
        f"try again in {max(1, math.ceil(wait_seconds))} s."
    )


@dataclass(frozen=True, slots=True)
class RateLimits:
    """How often one person, and one channel, may start a run (None: unlimited)."""

    limiter: RateLimiter
    locks: RedisLocks  # one "slow down" notice per person per wait, across replicas
    user: Rate | None = None
    channel: Rate | None = None


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message for Switchboard, already parsed from whatever Slack payload brought it."""

    team: str
    channel: str
    user: str
    text: str
    kind: InboundKind
    memory: ThreadRef  # the conversation this message belongs to
    reply_thread_ts: str | None  # where answers go; None = top level (a DM without thread)
    message_ts: str | None = None  # the user's message, for the status reaction
    skill: str | None = None  # forced (slash command)
    placeholder_ts: str | None = None  # a message to replace with the answer (slash command)
    source_ts: str | None = None  # the Slack message this came from (dedupe), when known


def _message(text: str, blocks: list[Any]) -> dict[str, Any]:
    return {"text": text, "blocks": [b.to_dict() if hasattr(b, "to_dict") else b for b in blocks]}


def _in_thread(inbound: Inbound, text: str, blocks: list[Any]) -> dict[str, Any]:
    """``chat.postMessage`` arguments for a message where ``inbound`` wants answers."""
    return {
        "channel": inbound.channel,
        "thread_ts": inbound.reply_thread_ts,
        "unfurl_links": False,
        "unfurl_media": False,
        **_message(text, blocks),
    }


def _outcome_name(outcome: Outcome) -> str:
    if isinstance(outcome, Reply):
        return "reply"
    if isinstance(outcome, ApprovalRequest):
        return "approval"
    return "refusal"


def slack_method(exc: SlackApiError) -> str:
    """The Web API method a failed call was for (``chat.postMessage``…)."""
    url = str(getattr(exc.response, "api_url", "") or "")
    return url.rstrip("/").rsplit("/", 1)[-1] or "unknown"


def user_error(exc: BaseException) -> tuple[str, str]:
    """The one place that maps an exception to what a Slack user sees: a short sentence
    and a reference id that is also in the log line. Never internals or provider text."""
    if isinstance(exc, RunFailed):
        return views.error_text(exc.ref), exc.ref
    ref = uuid.uuid4().hex[:10]
    if isinstance(exc, ThreadBusy):
        return f"{exc} Please try again in a moment. (reference `{ref}`)", ref
    if isinstance(exc, ModelConfigError):
        return (
            f"My model isn't configured correctly; an admin has to fix it. (reference `{ref}`)",
            ref,
        )
    if isinstance(exc, StorageError):
        return (
            f"My storage is unreachable right now; please try again shortly. (reference `{ref}`)",
            ref,
        )
    return views.error_text(ref), ref


class _Stream:
    """Streams an answer into Slack with chat.startStream/appendStream/stopStream.

    Text is flushed line by line, each line PII-masked, its links checked against the
    link policy and escaped before it leaves, so neither a card number nor a link can be
    split across two appends and slip past the checks. Slack renders ``markdown_text`` as
    Markdown itself, so foreign links are made inert in Markdown (:func:`defang_links`).
    """

    def __init__(self, client: AsyncWebClient, inbound: Inbound, *, links: LinkPolicy) -> None:
        self.client = client
        self._inbound = inbound
        self._links = links
        self._buffer = ""
        self.ts: str | None = None
        self.sent = ""

    async def __call__(self, text: str) -> None:
        self._buffer += text
        if "\n" in self._buffer:
            complete, _, self._buffer = self._buffer.rpartition("\n")
            await self._send(complete + "\n")

    async def _send(self, text: str) -> None:
        safe = escape_mrkdwn(defang_links(strip_token_ids(mask_text(text)), self._links))
        if not safe:
            return
        inbound = self._inbound
        assert inbound.reply_thread_ts is not None
        if self.ts is None:
            response = await self.client.chat_startStream(
                channel=inbound.channel,
                thread_ts=inbound.reply_thread_ts,
                markdown_text=safe,
                recipient_team_id=inbound.team,
                recipient_user_id=inbound.user,
                # Not in chat.startStream's documented arguments today; sent so that if
                # Slack unfurls streamed messages it honours them as on chat.postMessage.
                unfurl_links=False,
                unfurl_media=False,
            )
            self.ts = str(response["ts"])
        else:
            await self.client.chat_appendStream(
                channel=inbound.channel, ts=self.ts, markdown_text=safe
            )
        self.sent += safe

    async def finish(self, blocks: list[Any] | None) -> None:
        if self._buffer:
            rest, self._buffer = self._buffer, ""
            await self._send(rest)
        if self.ts is not None:
            await self.client.chat_stopStream(
                channel=self._inbound.channel, ts=self.ts, blocks=blocks
            )


class ApprovalCards(Protocol):
    """The Slack side of approvals that answering needs (``bot.approvals.ApprovalsBot``)."""

    async def post_card(self, inbound: Inbound, request: ApprovalRequest) -> None:
        """Post the card for a run that paused on a gated tool."""
        ...

    async def reset(self, thread: ThreadRef, user: str) -> str | None:
        """Reset a conversation for a person; why not, or None when it was reset (it knows
        the approvals a reset must not silently drop)."""
        ...


#: Builds the approval cards over the conversations they render into (the two refer to
#: each other, so the cards are made by the Conversations constructor, not patched on).
ApprovalCardsFactory = Callable[["Conversations"], ApprovalCards]


class Conversations:
    """Runs skills for Slack messages and renders what comes back."""

    def __init__(
        self,
        *,
        runtime: Runtime,
        client: AsyncWebClient,
        reader: SlackReader,
        directory: Directory,
        metrics: Metrics,
        streaming: bool = False,
        access: SlackConversationAccess | None = None,
        worker: Worker | None = None,
        rate_limits: RateLimits | None = None,
        links: LinkPolicy | None = None,
        approvals: ApprovalCardsFactory | None = None,
        enqueuer: Enqueuer | None = None,
        deliveries: Deliveries | None = None,
    ) -> None:
        self.runtime = runtime
        #: Which domains answers may link to (``SWITCHBOARD_LINK_DOMAINS``).
        self.links = links or LinkPolicy()
        self.worker = worker or Worker()
        #: The ⏳ reaction / Assistant status while an answer is on its way (cosmetic).
        self.status = WorkStatus(client=client, worker=self.worker)
        self._rates = rate_limits
        self.client = client
        self.reader = reader
        # Who is in which conversation: every run reads Slack as the person who asked.
        self.access = access or SlackConversationAccess(client=client)
        self.directory = directory
        self._metrics = metrics
        self._streaming = streaming
        #: Approval cards and the guarded reset; without them a paused run gets a plain
        #: "needs approval" note and reset just forgets.
        self.approvals: ApprovalCards | None = approvals(self) if approvals else None
        #: With a run queue, messages are stored and answered by a worker (bot.queueing).
        self.enqueuer = enqueuer
        #: Answers Slack would not take yet, posted later from the queue (bot.delivery).
        self.deliveries = deliveries
        #: Who pressed Stop on which job, so the worker can say so (job id -> user).
        self.stop_requests: dict[int, str] = {}

    async def submit(self, inbound: Inbound) -> None:
        """Admit ``inbound`` and answer it in the background; a person over their rate, or
        a full worker, gets a short ephemeral note instead (never silence)."""
        wait = await self.rate_wait(inbound.team, inbound.channel, inbound.user)
        if wait:
            if await self._first_notice(inbound, wait):
                await self.ephemeral(inbound, rate_limited_text(wait))
            return
        if self.enqueuer is not None:
            await self.enqueuer.enqueue(inbound, source_ts=inbound.source_ts)
            return
        try:
            self.worker.admit(self.answer(inbound), name=f"answer:{inbound.memory.thread_id}")
        except WorkerBusy as exc:
            self._metrics.busy.inc()
            log.warning("busy: %d tasks in flight; %s not answered", exc.pending, inbound.kind)
            await self.ephemeral(inbound, BUSY_TEXT)

    async def rate_wait(self, team: str, channel: str, user: str) -> float:
        """Take a token for a new run by ``user`` in ``channel``: 0 when allowed, else the
        seconds to wait. Redis being down lets the run through (better than silence)."""
        rates = self._rates
        if rates is None:
            return 0.0
        buckets = [
            (name, rate)
            for name, rate in (
                (f"user:{team}:{user}", rates.user),
                (f"channel:{team}:{channel}", rates.channel),
            )
            if rate is not None
        ]
        try:
            wait = await rates.limiter.take(buckets)
        except StorageError as exc:
            log.warning("rate limit skipped for %s: %s", user, exc)
            return 0.0
        if wait:
            self._metrics.rate_limited.inc()
            log.info("rate limited user=%s channel=%s for %.1f s", user, channel, wait)
        return wait

    async def _first_notice(self, inbound: Inbound, wait: float) -> bool:
        assert self._rates is not None
        try:
            return await self._rates.locks.claim(
                "rate-notice",
                f"{inbound.team}-{inbound.user}",
                ttl=timedelta(seconds=max(1.0, wait)),
            )
        except StorageError:
            return True

    async def answer(self, inbound: Inbound) -> None:
        """Run the message's skill and post the outcome; errors become a short reply."""
        await self._answer(inbound)

    async def answer_or_enqueue(self, inbound: Inbound) -> None:
        """Admitted work (a slash command): to the run queue when there is one."""
        if self.enqueuer is not None:
            await self.enqueuer.enqueue(inbound, source_ts=inbound.source_ts)
        else:
            await self._answer(inbound)

    async def _answer(self, inbound: Inbound) -> None:
        started = time.monotonic()
        signalled = await self.status.show(inbound)
        stream: _Stream | None = None
        try:
            # The principal of this turn; without it (is this a guest?) nothing runs.
            actor = await self.directory.actor(inbound.user, strict=True)
            if self._streaming and inbound.reply_thread_ts and inbound.placeholder_ts is None:
                stream = _Stream(self.client, inbound, links=self.links)
            outcome = await self.runtime.run(
                thread=inbound.memory,
                message=inbound.text,
                actor=actor,
                skill=inbound.skill,
                slack=self.reader,
                access=self.access,
                trigger=inbound.kind,
                on_text=stream,
            )
            await self.render(inbound, outcome, stream)
        except Exception as exc:
            if isinstance(exc, SlackApiError):
                self._metrics.slack_api_errors.labels(
                    method=slack_method(exc), error=str(exc.response.get("error", "unknown"))
                ).inc()
            text, ref = user_error(exc)
            if isinstance(exc, SkillError | ModelConfigError | StorageError | Undelivered):
                log.warning("answer failed ref=%s kind=%s: %s", ref, inbound.kind, exc)
            else:
                log.exception("answer failed ref=%s kind=%s", ref, inbound.kind)
            await self.post_error(inbound, text)
        finally:
            self.status.clear(inbound, shown=signalled)
            self._metrics.run_latency.labels(skill=inbound.skill or "auto").observe(
                time.monotonic() - started
            )

    async def answer_queued(
        self,
        inbound: Inbound,
        *,
        final_attempt: bool,
        fence: Callable[[], Awaitable[None]] | None = None,
    ) -> str:
        """A worker's turn: run the skill and replace the placeholder with the outcome.

        Returns the outcome (``reply``, ``approval``, ``refusal``, ``error``). A store that
        is briefly down (Redis, SQL) raises :class:`~storage.runqueue.Retryable` so the
        queue runs the turn again later, instead of apologising; on the final attempt the
        person gets the short error message. ``fence`` runs before anything is shown and
        raises :class:`~storage.runqueue.Superseded` when another worker took the job over
        meanwhile: then this attempt shows nothing, and the other one answers.
        """
        started = time.monotonic()
        signalled = await self.status.show(inbound)
        try:
            actor = await self.directory.actor(inbound.user, strict=True)
            stream = (
                _Stream(self.client, inbound, links=self.links) if self.streams(inbound) else None
            )
            outcome = await self.runtime.run(
                thread=inbound.memory,
                message=inbound.text,
                actor=actor,
                skill=inbound.skill,
                slack=self.reader,
                access=self.access,
                trigger=inbound.kind,
                on_text=stream,
            )
            if fence is not None:
                await fence()
            await self.render(inbound, outcome, stream)
            if inbound.placeholder_ts is not None:
                if isinstance(outcome, ApprovalRequest):
                    await self._settle(inbound, views_runs.approval_waiting_text(outcome.tool))
                elif isinstance(outcome, Refusal):
                    await self._settle(inbound, views_runs.REFUSED_TEXT)
            return _outcome_name(outcome)
        except Superseded:
            raise
        except Undelivered as exc:
            if fence is not None:
                await fence()
            return "reply" if await self.deliver_later(inbound, exc) else "error"
        except Exception as exc:
            # A store briefly down (Redis, a PostgreSQL restart): run the turn again later
            # rather than apologise; only the final attempt tells the person. A retry posts
            # nothing, so it needs no fence; whatever is shown below is fenced by attempt.
            if is_transient(exc):
                if not final_attempt:
                    raise Retryable(f"{type(exc).__name__}: {exc}") from exc
                if fence is not None:
                    await fence()
                shown = exc if isinstance(exc, StorageError) else DatabaseUnavailable(str(exc))
                text, ref = user_error(shown)
                log.warning("answer failed ref=%s kind=%s: %s", ref, inbound.kind, exc)
                await self.post_error(inbound, text)
                return "error"
            if fence is not None:
                await fence()
            if isinstance(exc, SlackApiError):
                self._metrics.slack_api_errors.labels(
                    method=slack_method(exc), error=str(exc.response.get("error", "unknown"))
                ).inc()
            text, ref = user_error(exc)
            if isinstance(exc, SkillError | ModelConfigError):
                log.warning("answer failed ref=%s kind=%s: %s", ref, inbound.kind, exc)
            else:
                log.exception("answer failed ref=%s kind=%s", ref, inbound.kind)
            await self.post_error(inbound, text)
            return "error"
        finally:
            self.status.clear(inbound, shown=signalled)
            self._metrics.run_latency.labels(skill=inbound.skill or "auto").observe(
                time.monotonic() - started
            )

    async def deliver_later(self, inbound: Inbound, undelivered: Undelivered) -> bool:
        """Queue a finished answer Slack refused for now (bot.delivery); False when it is
        lost. The turn is never run again for it (its model calls and tools are done):
        when the queue cannot take it either, this process waits out Slack's
        ``Retry-After`` once (at most 30 s) and tries the post again, and only then gives
        up, with a log line."""
        if self.deliveries is None:
            self._metrics.slack_api_errors.labels(
                method=undelivered.calls[0].method, error=undelivered.reason
            ).inc()
            log.error("answer not posted: %s", undelivered)
            return False
        try:
            await self.deliveries.later(
                undelivered,
                thread=inbound.memory.thread_id,
                channel=inbound.channel,
                placeholder_ts=inbound.placeholder_ts,
            )
            return True
        except StorageError as exc:
            log.warning("answer not deferred (%s): waiting for Slack here", exc)
        await asyncio.sleep(min(undelivered.wait, 30.0))
        try:
            with no_rate_limit_wait():  # waited once above: the 30 s bound holds
                await send(self.client, undelivered.calls, look=int(undelivered.check), guess=True)
        except (Undelivered, SlackApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            # never raised on: the turn is finished, a retry would run it again
            log.error(
                "answer lost: %s",
                exc if isinstance(exc, Undelivered | SlackApiError) else type(exc).__name__,
                extra={"thread_key": inbound.memory.thread_id},
            )
            return False
        return True

    def streams(self, inbound: Inbound) -> bool:
        """Whether this answer streams into its thread (``SWITCHBOARD_STREAMING``): then no
        placeholder is posted, the stream is the status."""
        return bool(self._streaming and inbound.reply_thread_ts and inbound.placeholder_ts is None)

    async def _settle(self, inbound: Inbound, text: str) -> None:
        assert inbound.placeholder_ts is not None
        try:
            await self.client.chat_update(
                channel=inbound.channel, ts=inbound.placeholder_ts, text=text, blocks=[]
            )
        except SlackApiError as exc:
            log.info("placeholder not updated: %s", exc.response.get("error"))

    async def reset(self, thread: ThreadRef, user: str) -> str | None:
        """Forget ``thread`` for ``user``: None when done, else why not (a sentence)."""
        if self.approvals is not None:
            return await self.approvals.reset(thread, user)
        await self.runtime.reset(thread)
        return None

    # -- rendering ----------------------------------------------------------------------

    async def render(
        self, inbound: Inbound, outcome: Outcome, stream: _Stream | None = None
    ) -> None:
        """Post ``outcome`` where ``inbound`` asks for answers (also used after approvals)."""
        if isinstance(outcome, Reply):
            if stream is not None:
                extras = views.feedback_blocks(outcome.run_id, outcome.skill)
                await stream.finish([b.to_dict() for b in extras])
                if stream.ts is not None:
                    return  # the answer is already in Slack
            await self._post_reply(inbound, outcome)
        elif isinstance(outcome, ApprovalRequest):
            if stream is not None:
                await stream.finish(None)
            if self.approvals is not None:
                await self.approvals.post_card(inbound, outcome)
                return
            blocks = views.approval_pending_blocks(outcome)
            await self._post(inbound, text=f"{outcome.tool} needs approval", blocks=blocks)
        elif isinstance(outcome, Refusal):
            if stream is not None:
                await stream.finish(None)
            await self.ephemeral(inbound, views.refusal_text(outcome))

    async def _post_reply(self, inbound: Inbound, reply: Reply) -> None:
        """Post the answer: the placeholder's update, then a message per further chunk.
        Raises :class:`~bot.delivery.Undelivered` with the calls not made when Slack
        keeps answering ``ratelimited``."""
        calls: list[SlackCall] = []
        chunks = views.answer_chunks(reply.text, links=self.links)
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            blocks = views.answer_blocks(chunk, run_id=reply.run_id, skill=reply.skill, last=last)
            if index == 0 and inbound.placeholder_ts is not None:
                if inbound.kind == "command":
                    # the answer replaces the "… asked" post: it still says who asked, and
                    # what (a queued message's placeholder is only "working on it…")
                    blocks = [views.asked_by(inbound.user, inbound.skill, inbound.text), *blocks]
                args: dict[str, Any] = {"channel": inbound.channel, "ts": inbound.placeholder_ts}
                calls.append(SlackCall("chat.update", args | _message(chunk, blocks)))
                continue
            calls.append(SlackCall("chat.postMessage", _in_thread(inbound, chunk, blocks)))
        await send(self.client, calls)

    async def _post(self, inbound: Inbound, *, text: str, blocks: list[Any]) -> None:
        await self.client.chat_postMessage(**_in_thread(inbound, text, blocks))

    async def ephemeral(self, inbound: Inbound, text: str) -> None:
        try:
            await self.client.chat_postEphemeral(
                channel=inbound.channel,
                user=inbound.user,
                text=text,
                thread_ts=inbound.reply_thread_ts,
            )
        except SlackApiError as exc:
            log.warning("postEphemeral failed: %s", exc.response.get("error"))

    async def post_error(self, inbound: Inbound, text: str) -> None:
        try:
            if inbound.placeholder_ts is not None:
                await self.client.chat_update(
                    channel=inbound.channel, ts=inbound.placeholder_ts, text=text, blocks=[]
                )
            else:
                await self.client.chat_postMessage(
                    channel=inbound.channel,
                    thread_ts=inbound.reply_thread_ts,
                    text=text,
                    unfurl_links=False,
                    unfurl_media=False,
                )
        except SlackApiError as exc:
            log.error("could not tell the user about an error: %s", exc.response.get("error"))
        except Exception:
            log.exception("could not tell the user about an error")
