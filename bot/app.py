"""The Bolt app factory: wires listeners to injected dependencies, nothing else."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.approvals import ApprovalsBot
from bot.conversations import Conversations, RateLimits
from bot.directory import Directory
from bot.listeners import BotContext, register
from bot.listeners.commands import register_admin
from bot.listeners.runs import register as register_runs
from bot.metrics import Metrics
from bot.queueing import Enqueuer, PayloadSealer
from bot.slack.reader import WebApiSlackReader
from bot.views.text import LinkPolicy
from bot.worker import Worker
from skills.runtime import RunFinished
from storage.feedback import FeedbackStore
from storage.ratelimit import Rate
from storage.runqueue import InboxStore, RunQueue

log = logging.getLogger(__name__)


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

    async def idle(self, timeout: float = 20.0) -> None:
        """Wait until nothing is left to do: background tasks done, no message waiting in
        the inbox or being answered (tests and the sandbox use this)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await self.worker.idle(max(0.01, deadline - loop.time()))
            backlog = await self.inbox.backlog()
            if not (backlog.pending or backlog.claimed or self.queue.worker_stats().running):
                if not self.worker.pending:
                    return
                continue
            if loop.time() > deadline:
                raise TimeoutError(
                    f"{backlog.pending} message(s) waiting, {backlog.claimed} being answered"
                )
            await asyncio.sleep(0.02)


def create_bot(
    services: object,
    *,
    client: AsyncWebClient,
    signing_secret: str | None,
    metrics: Metrics | None = None,
) -> Bot:
    """A Bolt app over ``services`` (see :func:`bot.services.open_services`).

    Request signatures are verified by the HTTP layer (``bot.http``) before Bolt sees a
    request, so Bolt's own check, which logs raw bodies on failure, is turned off.
    """
    from bot.services import Services

    assert isinstance(services, Services)
    metrics = metrics or Metrics()
    settings = services.settings
    worker = Worker(max_tasks=settings.max_background_tasks)
    runtime = services.runtime
    reader = WebApiSlackReader(client=client)
    sealer = PayloadSealer(key=runtime.config.pii_key)
    conversations = Conversations(
        runtime=runtime,
        client=client,
        reader=reader,
        directory=Directory(reader=reader, registry=runtime.registry),
        metrics=metrics,
        streaming=settings.streaming,
        worker=worker,
        rate_limits=RateLimits(
            limiter=services.rate_limiter,
            locks=services.locks,
            user=Rate.parse(settings.user_rate),
            channel=Rate.parse(settings.channel_rate),
        ),
        links=LinkPolicy.from_domains(settings.link_domains),
        enqueuer=Enqueuer(inbox=services.inbox, queue=services.queue, sealer=sealer),
    )

    def observe(event: RunFinished) -> None:
        metrics.runs.labels(skill=event.skill, outcome=event.outcome).inc()
        metrics.tokens.labels(skill=event.skill, direction="input").inc(event.usage.input_tokens)
        metrics.tokens.labels(skill=event.skill, direction="output").inc(event.usage.output_tokens)

    runtime.observers.append(observe)
    services.gate.observers.append(
        lambda skill, reason: metrics.skill_refusals.labels(skill=skill, reason=reason).inc()
    )
    context = BotContext(
        conversations=conversations,
        worker=worker,
        locks=services.locks,
        feedback=FeedbackStore(sessions=services.sessions),
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
    register(app, context)
    register_admin(context, services.gate, admin_usergroup=settings.admin_usergroup)
    from bot.approvals import install as install_approvals

    approvals = install_approvals(
        app, context, services.approvals, dm_approvers=services.settings.approval_dms
    )
    register_runs(app, context, queue=services.queue, inbox=services.inbox)
    return Bot(
        app=app,
        context=context,
        client=client,
        metrics=metrics,
        worker=worker,
        approvals=approvals,
        queue=services.queue,
        inbox=services.inbox,
        sealer=sealer,
    )
