"""Receiving and executing, split by the run queue (docs/adr/0001-run-queue.md).

Receivers (``serve``, ``socket``) verify, dedupe, authorize and *enqueue*: the message is
stored in the SQL inbox (one row per Slack message) and its thread's job is woken. Workers
(``switchboard worker``, or the same code inside a receiver) run :class:`TurnRunner`, which
answers a thread's waiting messages:

claim the rows → post a placeholder in the thread ("Working on it…", with Stop) → run the
skill → ``chat.update`` the placeholder with the answer → close the rows.

A job re-claimed after its worker died gets the same rows back, with the placeholder it had
posted, so the answer replaces that message: one answer per message, never two. Messages
that waited in a busy thread are folded into one turn when one person sent them in a row.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversations import Conversations, Inbound
from bot.delivery import NOT_POSTED, not_posted_reason, post_once
from bot.metrics import Metrics
from bot.slack.client import no_rate_limit_wait
from bot.views import runs as run_views
from skills import tracing
from skills.context import ThreadRef
from skills.errors import ThreadBusy
from skills.router import explicit_skill
from skills.runtime import Runtime
from storage.errors import StorageError
from storage.runqueue import (
    Handlers,
    InboxItem,
    InboxStore,
    JobInfo,
    QueueError,
    QueueUnavailable,
    RunQueue,
    WorkHandler,
)

log = logging.getLogger(f"switchboard.{__name__}")


class PayloadSealer:
    """Encrypts what people typed before it is stored in the inbox (card numbers and the
    like are masked only later, by the runtime, which needs the original to tokenize it).

    The key derives from the PII key (``SWITCHBOARD_PII_KEY``): every replica and worker of
    a deployment reads what another stored. Without that variable the key is random per
    process, so a message stored before a restart cannot be read afterwards; the person is
    then asked to send it again (:data:`LOST_TEXT`).
    """

    _PREFIX = "enc:"

    def __init__(self, *, key: bytes) -> None:
        digest = hashlib.sha256(b"switchboard-inbox\x00" + key).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, text: str) -> str:
        return self._PREFIX + self._fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def unseal(self, sealed: str) -> str | None:
        if not sealed.startswith(self._PREFIX):
            return None
        try:
            return self._fernet.decrypt(sealed[len(self._PREFIX) :].encode("ascii")).decode()
        except InvalidToken:
            return None


LOST_TEXT = (
    "Sorry — I restarted before I could answer your message and can no longer read it. "
    "Please send it again."
)


class Unreadable(Exception):
    """A stored message could not be decrypted (the key changed: see PayloadSealer)."""


def to_payload(inbound: Inbound, sealer: PayloadSealer) -> dict[str, Any]:
    data = asdict(inbound)
    data["memory"] = inbound.memory.thread_id
    data["text"] = sealer.seal(inbound.text)
    trace = tracing.inject()  # the receiver's trace, continued by the worker
    if trace:
        data["trace"] = trace
    return data


def from_payload(data: Mapping[str, Any], sealer: PayloadSealer) -> Inbound:
    fields = dict(data)
    fields.pop("trace", None)
    fields["memory"] = ThreadRef.parse(str(fields["memory"]))
    text = sealer.unseal(str(fields.get("text", "")))
    if text is None:
        raise Unreadable(str(fields.get("memory")))
    fields["text"] = text
    return Inbound(**fields)


def _head(data: Mapping[str, Any]) -> Inbound:
    """The message's routing fields without its text (for notices and grouping)."""
    fields = dict(data)
    fields.pop("trace", None)
    fields["memory"] = ThreadRef.parse(str(fields["memory"]))
    fields["text"] = ""
    return Inbound(**fields)


def dedupe_key(inbound: Inbound, source_ts: str | None) -> str:
    """One inbox row per Slack message, whichever event (mention, message) or replica
    brought it; commands and messages without a ts are each new."""
    if source_ts:
        return f"msg:{inbound.team}:{inbound.channel}:{source_ts}"
    return f"new:{uuid.uuid4().hex}"


#: Looks up the ``concurrency`` policy of the skill a message in a busy thread is for.
PolicyLookup = Callable[[Inbound], Awaitable[str]]

STILL_WORKING_TEXT = (
    "I'm still working on your previous message in this thread; send this again once I've answered."
)


def skill_policy(runtime: Runtime) -> PolicyLookup | None:
    """The policy lookup over ``runtime``'s skills: the forced skill, else the thread's
    skill, else the skill the message names first (the running turn may not have
    recorded the thread's skill yet); ``enqueue`` when none is known. None when every
    skill enqueues (the ack path then reads nothing extra)."""
    registry = runtime.registry
    if all(s.spec is None or s.spec.concurrency == "enqueue" for s in registry):
        return None

    async def lookup(inbound: Inbound) -> str:
        named = explicit_skill(inbound.text, registry.names())
        name = (
            inbound.skill
            or await runtime.thread_skill(inbound.memory)
            or (named[0] if named else None)
        )
        if name is None or name not in registry:
            return "enqueue"
        spec = registry.get(name).spec
        return spec.concurrency if spec is not None else "enqueue"

    return lookup


class Enqueuer:
    """The receiver's half: store the message, wake its thread's job.

    ``policy`` applies a skill's ``concurrency`` when the thread has a turn running:
    ``enqueue`` (wait, fold), ``interrupt`` (cancel the running turn; its messages go back
    to waiting and are answered together with the new one), ``reject`` (tell the sender
    only, and drop the new message)."""

    def __init__(
        self,
        *,
        inbox: InboxStore,
        queue: RunQueue,
        sealer: PayloadSealer,
        policy: PolicyLookup | None = None,
        client: AsyncWebClient | None = None,
    ) -> None:
        self.inbox = inbox
        self.queue = queue
        self.sealer = sealer
        self.policy = policy
        self.client = client

    async def enqueue(self, inbound: Inbound, *, source_ts: str | None) -> bool:
        """True when stored (False: a duplicate of a message stored before, or rejected).

        The inbox row is the acknowledgement: once it is committed the message is answered
        eventually, also when waking the job fails now (the maintenance loop wakes threads
        whose messages wait too long). A failure to store raises, so the HTTP layer answers
        non-2xx and Slack delivers the event again.
        """
        thread = inbound.memory.thread_id
        running: list[int] = []
        policy = "enqueue"
        if self.policy is not None:
            running = sorted(
                {
                    item.job_id
                    for item in await self.inbox.thread_items(thread)
                    if item.status == "claimed" and item.job_id is not None
                }
            )
            if running:
                policy = await self.policy(inbound)
        message: dict[str, Any] = {
            "dedupe_key": dedupe_key(inbound, source_ts),
            "thread_key": thread,
            "user_id": inbound.user,
            "payload": to_payload(inbound, self.sealer),
            "placeholder_ts": inbound.placeholder_ts,
        }
        # The common case stores and wakes together (one statement on PostgreSQL); the
        # other policies act on the running turn between the two.
        store = self.queue.admit if policy == "enqueue" else self.inbox.admit
        admitted = await store(**message)
        if admitted is None:
            log.info("duplicate message ignored", extra={"thread_key": thread})
            return False
        if policy == "enqueue":
            return True
        row = admitted.row_id
        if policy == "reject":
            await self.inbox.finish([row], "rejected")  # kept as the dedupe record
            await self._tell(inbound, STILL_WORKING_TEXT)
            log.info("message rejected: the thread is busy", extra={"thread_key": thread})
            return False
        if policy == "interrupt":
            for job_id in running:
                await self.inbox.requeue(job_id)  # its messages are answered with this one
                with contextlib.suppress(QueueError):
                    await self.queue.cancel(job_id)
                log.info("running turn interrupted", extra={"thread_key": thread, "job_id": job_id})
        await self.queue.wake_soon(thread, priority=admitted.share.priority)
        return True

    async def _tell(self, inbound: Inbound, text: str) -> None:
        if self.client is None:
            return
        try:
            await self.client.chat_postEphemeral(
                channel=inbound.channel,
                user=inbound.user,
                text=text,
                thread_ts=inbound.reply_thread_ts,
            )
        except SlackApiError as exc:
            log.info("busy note not sent: %s", exc.response.get("error"))


@dataclass(frozen=True, slots=True)
class _Turn:
    items: tuple[InboxItem, ...]
    inbound: Inbound
    unreadable: bool = False

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]


def fold(items: Sequence[InboxItem], sealer: PayloadSealer) -> list[_Turn]:
    """Group waiting messages into turns: consecutive messages of one person (same kind and
    forced skill) become one turn whose text is theirs joined; anyone else starts a new turn.
    A message that cannot be read any more gets a turn of its own, with ``unreadable`` set."""
    turns: list[list[InboxItem]] = []
    for item in items:
        inbound = _head(item.payload)
        if turns:
            last = _head(turns[-1][-1].payload)
            if (
                last.user == inbound.user
                and last.kind == inbound.kind
                and last.skill == inbound.skill
                and last.kind != "command"
            ):
                turns[-1].append(item)
                continue
        turns.append([item])
    result = []
    for group in turns:
        head = _head(group[-1].payload)
        texts: list[str] = []
        unreadable = False
        for item in group:
            try:
                texts.append(from_payload(item.payload, sealer).text)
            except Unreadable:
                unreadable = True
        placeholder = next((item.placeholder_ts for item in group if item.placeholder_ts), None)
        inbound = replace(
            head,
            text="\n\n".join(t for t in texts if t),
            placeholder_ts=placeholder or head.placeholder_ts,
        )
        result.append(_Turn(items=tuple(group), inbound=inbound, unreadable=unreadable))
    return result


class TurnRunner:
    """The worker's half for thread jobs (a :class:`storage.runqueue.ThreadHandler`)."""

    def __init__(
        self, *, conversations: Conversations, inbox: InboxStore, sealer: PayloadSealer
    ) -> None:
        self.conversations = conversations
        self.inbox = inbox
        self.sealer = sealer

    async def run(self, thread_key: str, job: JobInfo) -> None:
        await job.check()  # a superseded attempt must not even re-claim the rows
        items = await self.inbox.claim(thread_key, job.id)
        for turn in fold(items, self.sealer):
            if turn.unreadable and not turn.inbound.text:
                await self.conversations.post_error(turn.inbound, LOST_TEXT)
                await self.inbox.finish(turn.ids, "unreadable")
                continue
            trace = turn.items[0].payload.get("trace")
            with tracing.extract(trace if isinstance(trace, Mapping) else None):
                inbound = await self._placeholder(turn, job)
                outcome = await self.conversations.answer_queued(
                    inbound, final_attempt=job.final_attempt, fence=job.check
                )
            await self.inbox.finish(turn.ids, outcome)

    async def stopped(self, thread_key: str, job: JobInfo) -> None:
        """The Stop button (or ``runs cancel``): say so where the answer would have been."""
        open_items = [i for i in await self.inbox.by_job(job.id) if i.status != "done"]
        for turn in fold(open_items, self.sealer):
            inbound = turn.inbound
            stopper = getattr(self.conversations, "stop_requests", {}).pop(job.id, None)
            if inbound.placeholder_ts:
                with contextlib.suppress(SlackApiError):
                    await self.conversations.client.chat_update(
                        channel=inbound.channel,
                        ts=inbound.placeholder_ts,
                        text=run_views.stopped_text(stopper),
                        blocks=[],
                    )
            await self.inbox.finish(turn.ids, "stopped")
        await self._settle(thread_key)

    async def _settle(self, thread_key: str) -> None:
        """No dangling tool calls after a cancelled turn (stopped, or interrupted by a new
        message, whose rows went back to waiting): the next turn must be valid."""
        try:
            await self.conversations.runtime.settle_cancelled(ThreadRef.parse(thread_key))
        except (StorageError, ThreadBusy, ValueError) as exc:
            log.warning("cancelled turn not settled: %s", exc)

    async def _placeholder(self, turn: _Turn, job: JobInfo) -> Inbound:
        """The turn's status message: reuse the one posted before (an earlier attempt, the
        busy notice, a slash command), else post one. Two writers (this and the busy
        notice) both store it conditionally; the loser deletes its own post."""
        inbound = turn.inbound
        client = self.conversations.client
        if self.conversations.streams(inbound):
            return inbound  # the streamed answer is the status (a re-run streams anew)
        if inbound.placeholder_ts:
            # Cosmetic (show Stop on the old one): never hold the turn back for a 429.
            with contextlib.suppress(SlackApiError), no_rate_limit_wait():
                await client.chat_update(
                    channel=inbound.channel,
                    ts=inbound.placeholder_ts,
                    text=run_views.WORKING_TEXT,
                    blocks=run_views.placeholder_blocks(run_views.WORKING_TEXT, job_id=job.id),
                )
            return inbound
        blocks = run_views.placeholder_blocks(run_views.WORKING_TEXT, job_id=job.id)
        try:
            # never two: a post whose answer was lost is looked for before it is made again
            response = await post_once(
                client,
                {
                    "channel": inbound.channel,
                    "thread_ts": inbound.reply_thread_ts,
                    "text": run_views.WORKING_TEXT,
                    "blocks": blocks,
                    "unfurl_links": False,
                    "unfurl_media": False,
                },
                before=job.check,  # also before a second attempt, seconds later
            )
        except NOT_POSTED as exc:
            log.info("placeholder not posted: %s", not_posted_reason(exc))
            return inbound  # the answer is posted as a new message instead
        ts = str(response["ts"])
        if not await _store_placeholder(self.inbox, client, inbound.channel, turn.items[0].id, ts):
            current = await self.inbox.get(turn.items[0].id)
            with contextlib.suppress(SlackApiError):
                await client.chat_delete(channel=inbound.channel, ts=ts)
            ts = current.placeholder_ts if current and current.placeholder_ts else ts
        if len(turn.items) > 1:
            await self.inbox.set_placeholder([i.id for i in turn.items[1:]], ts)
        return replace(inbound, placeholder_ts=ts)


async def _store_placeholder(
    inbox: InboxStore, client: AsyncWebClient, channel: str, row_id: str, ts: str
) -> bool:
    """Remember ``ts`` as the row's placeholder unless it has one (True when stored). When
    the store fails (the database blips), the message just posted is deleted before the
    error goes on: the attempt that runs again posts its own, and no orphan "Working on
    it…" is left in the thread beside the answer."""
    try:
        return await inbox.set_placeholder_if_unset(row_id, ts)
    except BaseException:
        with contextlib.suppress(SlackApiError, OSError, asyncio.TimeoutError):
            await client.chat_delete(channel=channel, ts=ts)
        raise


class Maintenance:
    """Background duties of a process that runs workers: wake threads whose wake-up was
    lost (the queue was down when the message came), tell people who wait longer than
    ``patience`` where they are in line, and refresh the queue gauges."""

    def __init__(
        self,
        *,
        queue: RunQueue,
        inbox: InboxStore,
        conversations: Conversations,
        metrics: Metrics,
        patience: timedelta,
        every: float = 2.0,
        lost_after: timedelta = timedelta(seconds=15),
        retention: timedelta = timedelta(hours=72),
        prune_every: float = 3600.0,
    ) -> None:
        self.queue = queue
        self.inbox = inbox
        self.conversations = conversations
        self.metrics = metrics
        self.patience = patience
        self.every = every
        self.lost_after = lost_after
        self.retention = retention
        self.prune_every = prune_every
        self._next_prune = time.monotonic() + min(60.0, prune_every)  # not during start-up
        self._seen_retries = 0
        self._seen_dead = 0

    async def tick(self) -> None:
        for thread in await self.inbox.waiting_threads(older_than=self.lost_after):
            await self.queue.wake(thread)
        await self.notify_overdue()
        await self.refresh_gauges()
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + self.prune_every
            await self.prune()

    async def prune(self) -> None:
        """Finished work older than the retention goes (closed inbox rows, succeeded and
        cancelled jobs): without it both tables grow by a row per message, forever. Every
        worker process does it once an hour; deleting what another already deleted is a
        no-op."""
        rows, jobs = await self.queue.prune(older_than=self.retention)
        if rows or jobs:
            log.info(
                "pruned finished work older than %s: %d inbox row(s)%s",
                self.retention,
                rows,
                ", and old jobs" if jobs else "",
            )

    async def refresh_gauges(self) -> None:
        for stats in await self.queue.stats():
            self.metrics.queue_depth.labels(queue=stats.queue).set(stats.depth)
            self.metrics.queue_oldest_age.labels(queue=stats.queue).set(stats.oldest_age)
            self.metrics.queue_scheduled.labels(queue=stats.queue).set(stats.scheduled)
        worker = self.queue.worker_stats()
        self.metrics.runs_in_progress.set(worker.running)
        if worker.retries > self._seen_retries:
            self.metrics.queue_retries.inc(worker.retries - self._seen_retries)
            self._seen_retries = worker.retries
        if worker.dead > self._seen_dead:
            self.metrics.dead_letters.inc(worker.dead - self._seen_dead)
            self._seen_dead = worker.dead

    async def notify_overdue(self) -> None:
        """Post "busy, you're #N" for messages waiting longer than ``patience``; it becomes
        the turn's placeholder, replaced by the answer later."""
        client = self.conversations.client
        for item in await self.inbox.overdue(older_than=self.patience):
            inbound = _head(item.payload)
            position = await self.inbox.position(item.created_at)
            text = run_views.busy_text(position)
            try:
                response = await post_once(  # it becomes the placeholder: never two
                    client,
                    {
                        "channel": inbound.channel,
                        "thread_ts": inbound.reply_thread_ts,
                        "text": text,
                        "blocks": run_views.placeholder_blocks(text, job_id=None),
                    },
                )
            except NOT_POSTED as exc:
                log.info("busy notice not posted: %s", not_posted_reason(exc))
                continue
            ts = str(response["ts"])
            if not await _store_placeholder(self.inbox, client, inbound.channel, item.id, ts):
                with contextlib.suppress(SlackApiError):
                    await client.chat_delete(channel=inbound.channel, ts=ts)
            else:
                self.metrics.busy_notices.inc()

    async def run_forever(self) -> None:
        while True:
            try:
                await self.tick()
            except (QueueUnavailable, OSError) as exc:
                log.warning("queue maintenance skipped: %s", exc)
            except Exception:  # the loop must outlive one bad tick; logged with its trace
                log.exception("queue maintenance failed")
            await asyncio.sleep(self.every)


@contextlib.asynccontextmanager
async def running_workers(
    *,
    queue: RunQueue,
    inbox: InboxStore,
    conversations: Conversations,
    metrics: Metrics,
    sealer: PayloadSealer,
    concurrency: int,
    drain_seconds: float,
    patience: timedelta,
    work: Mapping[str, WorkHandler] | None = None,
    name: str = "worker",
    retention: timedelta = timedelta(hours=72),
) -> AsyncIterator[asyncio.Event]:
    """Run queue workers (and their maintenance) while the block runs; setting the yielded
    event, or leaving the block, stops fetching and drains (SIGTERM path)."""
    queue.on_start = metrics.claim_to_start.observe
    woken = await queue.recover()
    if woken:
        log.info("re-queued %d thread(s) with messages still waiting", woken)
    handlers = Handlers(
        thread=TurnRunner(conversations=conversations, inbox=inbox, sealer=sealer),
        work=dict(work or {}),
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(
        queue.run_worker(
            handlers, concurrency=concurrency, drain_seconds=drain_seconds, stop=stop, name=name
        ),
        name="queue-worker",
    )
    maintenance = Maintenance(
        queue=queue,
        inbox=inbox,
        conversations=conversations,
        metrics=metrics,
        patience=patience,
        retention=retention,
    )
    upkeep = asyncio.create_task(maintenance.run_forever(), name="queue-maintenance")
    try:
        yield stop
    finally:
        stop.set()
        upkeep.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upkeep
        await worker
