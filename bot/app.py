"""The Bolt app factory: wires listeners to injected dependencies, nothing else."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.approvals import ApprovalsBot
from bot.approvals import install as install_approvals
from bot.conversations import Conversations, RateLimits
from bot.delivery import Deliveries
from bot.directory import Directory
from bot.listeners import BotContext, register
from bot.listeners.commands import register_admin
from bot.listeners.runs import register as register_runs
from bot.metrics import Metrics
from bot.queueing import Enqueuer, PayloadSealer, skill_policy
from bot.slack.reader import WebApiSlackReader
from bot.views.text import LinkPolicy
from bot.worker import Worker
from skills.approvals import ApprovalService
from skills.limits import SkillGate
from skills.runtime import Runtime
from storage.feedback import FeedbackStore
from storage.locks import RedisLocks
from storage.ratelimit import Rate, RateLimiter
from storage.runqueue import InboxStore, RunQueue
from storage.runs import RunStore
from storage.transient import is_transient

log = logging.getLogger(f"switchboard.{__name__}")


@dataclass(slots=True)
class Bot:
    """The Slack side of a process: the Bolt app plus what its listeners share."""

    app: AsyncApp
    context: BotContext
    client: AsyncWebClient
    metrics: Metrics
    worker: Worker
    approvals: ApprovalsBot
    queue: RunQueue
    inbox: InboxStore
    sealer: PayloadSealer
    deliveries: Deliveries

    async def idle(self, timeout: float = 20.0) -> None:
        """Wait until nothing is left to do: background tasks done, no message waiting in
        the inbox or being answered, no job waiting or running on the queue (approval
        resumes, firings) (tests and the sandbox use this)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await self.worker.idle(max(0.01, deadline - loop.time()))
            backlog = await self.inbox.backlog()
            queued = any(s.depth or s.running or s.scheduled for s in await self.queue.stats())
            if not (
                backlog.pending or backlog.claimed or queued or self.queue.worker_stats().running
            ):
                if not self.worker.pending:
                    return
                continue
            if loop.time() > deadline:
                raise TimeoutError(
                    f"{backlog.pending} message(s) waiting, {backlog.claimed} being answered"
                )
            await asyncio.sleep(0.02)


@dataclass(frozen=True, slots=True)
class BotConfig:
    """The bot's options (the composition root fills them from settings)."""

    streaming: bool = False  # SWITCHBOARD_STREAMING
    max_background_tasks: int = 256  # SWITCHBOARD_MAX_BACKGROUND_TASKS
    user_rate: Rate | None = None  # SWITCHBOARD_USER_RATE
    channel_rate: Rate | None = None  # SWITCHBOARD_CHANNEL_RATE
    links: LinkPolicy = field(default_factory=LinkPolicy)  # SWITCHBOARD_LINK_DOMAINS
    admin_usergroup: str | None = None  # SWITCHBOARD_ADMIN_USERGROUP
    approval_dms: bool = False  # SWITCHBOARD_APPROVAL_DMS


def create_bot(
    *,
    runtime: Runtime,
    approvals: ApprovalService,
    gate: SkillGate,
    locks: RedisLocks,
    rate_limiter: RateLimiter,
    feedback: FeedbackStore,
    metrics: Metrics,
    queue: RunQueue,
    inbox: InboxStore,
    client: AsyncWebClient,
    signing_secret: str | None,
    config: BotConfig | None = None,
    runs: RunStore | None = None,
) -> Bot:
    """A Bolt app over the runtime and its stores.

    Request signatures are verified by the HTTP layer (``bot.http``) before Bolt sees a
    request, so Bolt's own check, which logs raw bodies on failure, is turned off.
    ``metrics`` are the ones the runtime and the gate already report into; ``runs``
    (the run records) answer ``/switchboard admin usage``.
    """
    config = config or BotConfig()
    worker = Worker(max_tasks=config.max_background_tasks)
    reader = WebApiSlackReader(client=client)
    sealer = PayloadSealer(key=runtime.config.pii_key)
    deliveries = Deliveries(queue=queue, client=client, sealer=sealer, metrics=metrics)
    conversations = Conversations(
        runtime=runtime,
        client=client,
        reader=reader,
        directory=Directory(reader=reader, registry=runtime.registry),
        metrics=metrics,
        streaming=config.streaming,
        worker=worker,
        rate_limits=RateLimits(
            limiter=rate_limiter,
            locks=locks,
            user=config.user_rate,
            channel=config.channel_rate,
        ),
        links=config.links,
        approvals=ApprovalsBot.cards(
            approvals, dm_approvers=config.approval_dms, metrics=metrics, queue=queue
        ),
        enqueuer=Enqueuer(
            inbox=inbox,
            queue=queue,
            sealer=sealer,
            policy=skill_policy(runtime),
            client=client,
        ),
        deliveries=deliveries,
    )
    context = BotContext(
        conversations=conversations,
        worker=worker,
        locks=locks,
        feedback=feedback,
        metrics=metrics,
    )
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret or "",
        request_verification_enabled=False,
        # Listeners are thin (parse, authorize, spawn): running them before the response
        # keeps acks fast and lets shutdown and tests wait for every spawned task.
        process_before_response=True,
        raise_error_for_unhandled_request=False,
        logger=logging.getLogger("slack_bolt"),
    )
    app.error(_unhandled)
    register(app, context)
    register_admin(context, gate, admin_usergroup=config.admin_usergroup, runs=runs)
    bot_approvals = install_approvals(app, context)
    register_runs(app, context, queue=queue, inbox=inbox)
    return Bot(
        app=app,
        context=context,
        client=client,
        metrics=metrics,
        worker=worker,
        approvals=bot_approvals,
        queue=queue,
        inbox=inbox,
        sealer=sealer,
        deliveries=deliveries,
    )


async def _unhandled(error: Exception, response: BoltResponse | None) -> BoltResponse | None:
    """What a request whose listener raised gets back. A store that cannot be reached (the
    message could not even be stored) is a 503: Slack delivers the event again, and the
    log says so in one line. Anything else keeps Bolt's 500, with its traceback."""
    if is_transient(error):
        log.warning("request not handled, a store is unreachable (Slack will retry): %s", error)
        return BoltResponse(status=503, body="") if response is not None else None
    log.error("listener failed", exc_info=error)
    return None
