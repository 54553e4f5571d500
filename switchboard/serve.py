"""Process entry points for ``switchboard serve`` and ``switchboard socket``, and the one
place the Slack app is assembled (:func:`build_bot`, :func:`open_bot`) — the sandbox, the
benchmarks and the tests open it the same way."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import signal
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta

import aiohttp
import uvicorn
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette

from bot.app import Bot, BotConfig, create_bot
from bot.approvals import RESUME_KIND
from bot.delivery import DELIVER_KIND
from bot.http import create_http_app, create_metrics_app, create_ops_app
from bot.queueing import running_workers
from bot.schedules import SchedulesFeature
from bot.schedules import install as install_feature
from bot.slack.client import create_web_client
from bot.views.text import LinkPolicy
from scheduler.maintenance import run_while_leaderless
from scheduler.ports import Maintenance
from scheduler.queued import FIRE_KIND
from scheduler.service import SchedulerService
from skills.sampling import SCORE_KIND
from storage.feedback import FeedbackStore
from storage.ratelimit import Rate
from switchboard.health import (
    draining_check,
    ops_listener,
    schema_check,
    side_server,
    started_check,
    wait_for_schema,
)
from switchboard.logs import configure_from
from switchboard.online import build_scorer
from switchboard.scheduling import build_queued_firings, build_scheduler
from switchboard.services import Services, open_services
from switchboard.settings import Settings
from switchboard.socket import serve_socket_mode

__all__ = [
    "bot_config",
    "build_bot",
    "install_schedules",
    "metrics_listener",
    "open_bot",
    "queue_workers",
    "run_features",
    "run_worker",
]

log = logging.getLogger(__name__)

#: How many 429s one Web API call of ``switchboard worker`` waits out (each for its
#: ``Retry-After``, at most 30 s): about two minutes of a storm before a call gives up.
WORKER_RATE_LIMIT_RETRIES = 12


def bot_config(settings: Settings) -> BotConfig:
    """The bot's options from the settings."""
    return BotConfig(
        streaming=settings.streaming,
        max_background_tasks=settings.max_background_tasks,
        user_rate=Rate.parse(settings.user_rate),
        channel_rate=Rate.parse(settings.channel_rate),
        links=LinkPolicy.from_domains(settings.link_domains),
        admin_usergroup=settings.admin_usergroup,
        approval_dms=settings.approval_dms,
    )


def build_bot(services: Services, *, client: AsyncWebClient, signing_secret: str | None) -> Bot:
    """The Bolt app over ``services``, configured from their settings."""
    return create_bot(
        runtime=services.runtime,
        approvals=services.approvals,
        gate=services.gate,
        locks=services.locks,
        rate_limiter=services.rate_limiter,
        feedback=FeedbackStore(sessions=services.sessions),
        metrics=services.metrics,
        queue=services.queue,
        inbox=services.inbox,
        client=client,
        signing_secret=signing_secret,
        config=bot_config(services.settings),
        runs=services.runs,
    )


def install_schedules(
    bot: Bot, services: Services, scheduler: SchedulerService
) -> SchedulesFeature:
    """The Slack side of ``scheduler`` (commands, buttons, App Home, stand-up DMs)."""
    return install_feature(
        bot,
        scheduler,
        audit=services.audit,
        admin_usergroup=services.settings.admin_usergroup,
    )


def approval_sweep(bot: Bot, settings: Settings) -> Maintenance:
    """The approval expiry sweep as a scheduler job: expire overdue requests, finish
    decided ones whose run never completed, every SWITCHBOARD_APPROVAL_SWEEP seconds."""
    return Maintenance(
        name="approval-sweep",
        every=timedelta(seconds=settings.approval_sweep_seconds),
        run=bot.approvals.sweep_once,
    )


@contextlib.asynccontextmanager
async def run_features(bot: Bot, services: Services) -> AsyncIterator[SchedulerService | None]:
    """What runs beside the listeners in every bot process: the scheduler (leader-elected:
    only one process in the deployment fires schedules) and the approval sweep, which its
    leader runs. With the scheduler turned off here the sweep runs here only while no
    scheduler leads anywhere (scheduler.maintenance), so expiry never stops.

    Yields the scheduler when this process runs one (None when it is turned off)."""
    settings = services.settings
    sweep = approval_sweep(bot, settings)
    # Firings go to the run queue whenever some worker takes them: a shared queue, or
    # this process's own workers (the embedded default).
    scheduler = build_scheduler(
        services,
        client=bot.client,
        queued=services.queue.durable or settings.inprocess_workers,
        maintenance=[sweep],
    )
    install_schedules(bot, services, scheduler)
    sweeper: asyncio.Task[None] | None = None
    if settings.scheduler_enabled:
        await scheduler.start()
    else:
        sweeper = asyncio.create_task(
            run_while_leaderless(sweep, locks=services.locks, lease=scheduler.config.lease_name),
            name="approval-sweep",
        )
    try:
        async with contextlib.AsyncExitStack() as stack:
            if settings.inprocess_workers:
                await stack.enter_async_context(queue_workers(bot, services, settings))
            yield scheduler if settings.scheduler_enabled else None
    finally:
        if settings.scheduler_enabled:
            await scheduler.stop()
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper


def warm_models(services: Services, settings: Settings) -> None:
    """Build the configured chat models now, before any turn is claimed.

    A model is otherwise built by the first turn that needs it, and building one imports
    its provider's SDK (``langchain_openai`` and ``openai`` are thousands of pydantic
    models): seconds of CPU on the event loop, on a busy node more than the queue's
    stalled-worker timeout, so a healthy worker missed its heartbeats and had its turns
    taken back and run twice (found by tests/chaos). A model that cannot be built is
    logged here and fails its turns as before."""
    names = dict.fromkeys([settings.model, settings.router_model, *settings.fallback_models])
    for name in names:
        if not name:
            continue
        try:
            services.runtime.model(name)
        except Exception as exc:  # the turns that need it report it to the person
            log.warning("model %s not built at start: %s", name, exc)


@contextlib.asynccontextmanager
async def queue_workers(
    bot: Bot, services: Services, settings: Settings, *, concurrency: int | None = None
) -> AsyncIterator[asyncio.Event]:
    """The run queue's workers over this process's bot (in-process, or ``switchboard worker``):
    agent turns, approval resumes, scheduled firings and the online scoring of sampled turns."""
    warm_models(services, settings)
    firings = build_queued_firings(services, client=bot.client)
    scorer = build_scorer(services)
    async with running_workers(
        queue=services.queue,
        inbox=services.inbox,
        conversations=bot.context.conversations,
        metrics=bot.metrics,
        sealer=bot.sealer,
        concurrency=concurrency or settings.worker_concurrency,
        drain_seconds=settings.worker_drain_seconds,
        patience=timedelta(seconds=settings.queue_patience),
        retention=timedelta(hours=settings.queue_retention_hours),
        work={
            RESUME_KIND: bot.approvals.resume_job,
            FIRE_KIND: firings.handle,
            SCORE_KIND: scorer.handle,
            DELIVER_KIND: bot.deliveries.handle,
        },
    ) as stop:
        await services.sampler.recover()  # samples whose scoring job was lost
        yield stop


@contextlib.asynccontextmanager
async def open_bot(
    settings: Settings, *, env: Mapping[str, str] | None = None
) -> AsyncIterator[tuple[Services, Bot]]:
    """Services plus the Bolt app and its features, closed in order (background work
    drained first). ``env`` is what skill specs expand ``${VAR}`` from (default: os.environ)."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
    secret = settings.slack_signing_secret
    async with (
        open_services(settings, env=env, watch_skills=True) as services,
        aiohttp.ClientSession() as session,  # one connection pool for every Web API call
    ):
        client = create_web_client(token=token, base_url=settings.slack_api_url, session=session)
        bot = build_bot(
            services,
            client=client,
            signing_secret=secret.get_secret_value() if secret else None,
        )
        try:
            async with run_features(bot, services):
                yield services, bot
        finally:
            await bot.worker.drain()


@contextlib.asynccontextmanager
async def metrics_listener(bot: Bot, *, host: str, port: int | None) -> AsyncIterator[None]:
    """Serve ``/metrics`` alone on ``port`` (``METRICS_PORT``) while the block runs; with
    ``port=None`` nothing is started and ``/metrics`` stays on the public port.

    A port that cannot be bound stops start-up (OSError), like the main port would.
    """
    if port is None:
        yield
        return
    async with side_server(create_metrics_app(bot), host=host, port=port, name="metrics-http"):
        yield


def run_http(settings: Settings) -> None:
    configure_from(settings)
    secret = settings.slack_signing_secret
    assert secret is not None

    async def _main() -> None:
        async with (
            open_bot(settings) as (services, bot),
            metrics_listener(bot, host=settings.host, port=settings.metrics_port),
        ):
            app: Starlette = create_http_app(
                bot,
                signing_secret=secret.get_secret_value(),
                services=services,
                serve_metrics=settings.metrics_port is None,
            )
            config = uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
            log.info("serving on %s:%d", settings.host, settings.port)
            await uvicorn.Server(config).serve()

    asyncio.run(_main())


def run_socket(settings: Settings) -> None:
    configure_from(settings)
    app_token = settings.slack_app_token
    assert app_token is not None

    async def _main() -> None:
        async with (
            open_bot(settings) as (services, bot),
            metrics_listener(bot, host=settings.host, port=settings.metrics_port),
        ):
            # Socket Mode needs no public URL, but probes and Prometheus still do.
            config = uvicorn.Config(
                create_ops_app(bot, services=services, serve_metrics=settings.metrics_port is None),
                host=settings.host,
                port=settings.port,
                log_config=None,
                access_log=False,
                lifespan="off",
            )
            ops = asyncio.create_task(uvicorn.Server(config).serve(), name="ops-http")
            try:
                await serve_socket_mode(bot, app_token=app_token.get_secret_value())
            finally:
                ops.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ops

    asyncio.run(_main())


def dump_tasks() -> None:
    """Log every asyncio task of this process with where it waits (``kill -USR2 <pid>`` on
    a worker whose turn seems stuck: the stack shows the ``await`` it is parked on)."""
    tasks = asyncio.all_tasks()
    lines = [f"{len(tasks)} asyncio tasks:"]
    for task in sorted(tasks, key=lambda t: t.get_name()):
        out = io.StringIO()
        task.print_stack(limit=30, file=out)
        lines.append(f"--- {task.get_name()}\n{out.getvalue()}")
    log.warning("\n".join(lines))


def run_worker(settings: Settings, *, concurrency: int | None = None) -> None:
    """``switchboard worker``: run agent turns from the queue until SIGTERM/SIGINT, then stop
    claiming, let turns in flight finish (``SWITCHBOARD_WORKER_DRAIN_SECONDS``) and hand
    the rest back. ``/healthz``, ``/readyz`` (SQL, Redis, the queue, the schema version,
    not draining) and ``/metrics`` on PORT (``/metrics`` on METRICS_PORT when set).
    """
    configure_from(settings)

    async def _main() -> None:
        token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
        async with (
            open_services(settings, watch_skills=True) as services,
            aiohttp.ClientSession() as session,
        ):
            # Off the ack path: a worker waits out a 429 storm rather than lose an answer.
            client = create_web_client(
                token=token,
                base_url=settings.slack_api_url,
                session=session,
                rate_limit_retries=WORKER_RATE_LIMIT_RETRIES,
            )
            bot = build_bot(services, client=client, signing_secret=None)
            stopping, working = asyncio.Event(), asyncio.Event()
            app = create_ops_app(
                bot,
                services=services,
                serve_metrics=settings.metrics_port is None,
                checks={
                    "schema": schema_check(services),
                    "accepting": draining_check(stopping),
                    "working": started_check(working),
                },
            )
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stopping.set)
            loop.add_signal_handler(signal.SIGUSR2, dump_tasks)
            async with ops_listener(
                app,
                services.metrics,
                host=settings.host,
                port=settings.port,
                metrics_port=settings.metrics_port,
                name="worker-http",
            ):
                try:
                    if await wait_for_schema(services, stopping=stopping):
                        async with queue_workers(bot, services, settings, concurrency=concurrency):
                            working.set()
                            log.info(
                                "worker running",
                                extra={"concurrency": concurrency or settings.worker_concurrency},
                            )
                            await stopping.wait()
                            log.info(
                                "stopping: no new turns; draining for up to %.0f s",
                                settings.worker_drain_seconds,
                            )
                finally:
                    await bot.worker.drain()
            log.info("worker stopped")

    asyncio.run(_main())
