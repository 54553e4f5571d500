"""Opens the process's parts from :class:`~switchboard.settings.Settings`, and closes them.

Every entry point (serve, socket, console, scheduler, sandbox, eval feedback) opens the
same :class:`Services`; nothing is created at import time. The runtime inside is built by
:func:`switchboard.runtime.build_runtime`, like every other runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.metrics import Metrics
from skills.approvals import ApprovalService
from skills.catalog import describe_sources, load_registry
from skills.egress import egress_client
from skills.limits import SkillGate
from skills.registry import SkillRegistry
from skills.reload import SkillReloader
from skills.runtime import ModelFactory, Runtime
from skills.sampling import TurnSampler
from storage.audit import AuditLog
from storage.checkpoint import RedisCheckpointSaver
from storage.keys import Keys
from storage.locks import RedisLocks
from storage.ratelimit import RateLimiter
from storage.redis import create_redis
from storage.runqueue import (
    InboxStore,
    RunQueue,
    ensure_queue_schema,
    libpq_dsn,
    queue_schema_ready,
)
from storage.runs import RunStore
from storage.scores import ScoreStore
from storage.sql import create_engine, session_factory, upgrade
from switchboard.runtime import build_runtime, default_model_factory, runtime_config
from switchboard.settings import Settings

__all__ = ["Services", "open_services"]

log = logging.getLogger(f"switchboard.{__name__}")


@dataclass(slots=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    keys: Keys
    locks: RedisLocks
    checkpointer: RedisCheckpointSaver
    registry: SkillRegistry
    runtime: Runtime
    runs: RunStore
    http: httpx.AsyncClient
    approvals: ApprovalService
    gate: SkillGate
    rate_limiter: RateLimiter
    audit: AuditLog
    #: The process's Prometheus metrics; the runtime and the gate report into them.
    metrics: Metrics
    #: The durable run queue (docs/adr/0001-run-queue.md) and its inbox of messages.
    inbox: InboxStore
    queue: RunQueue
    #: Reloads the skill specs into ``registry`` (watching the folders with ``watch_skills``).
    reloader: SkillReloader
    #: What was loaded and from where (printed at start, see ``describe_sources``).
    skill_sources: list[str]
    #: Online evaluation: the turns kept for the judge (``SWITCHBOARD_EVAL_SAMPLE``, 👎).
    sampler: TurnSampler
    #: The model factory the runtime was built with (the judge is loaded with it too).
    model_factory: ModelFactory


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    model_factory: ModelFactory | None = None,
    env: Mapping[str, str] | None = None,
    redis: Redis | None = None,
    metrics: Metrics | None = None,
    watch_skills: bool = False,
    **runtime_overrides: Any,
) -> AsyncIterator[Services]:
    """Open SQL, Redis and the runtime; the embedded SQLite database migrates itself.

    ``env`` is what skill specs expand ``${VAR}`` from (default: os.environ);
    ``runtime_overrides`` replace :class:`~skills.runtime.RuntimeConfig` fields. With
    ``watch_skills`` (the long-running processes) a change in ``SWITCHBOARD_SKILLS_DIR`` is
    loaded while the services are open (``skills.reload``), unless
    ``SWITCHBOARD_SKILLS_RELOAD=0``.
    """
    env = os.environ if env is None else env
    if settings.uses_embedded_sql:
        await upgrade(settings.database_url)
    elif not await queue_schema_ready(libpq_dsn(settings.database_url)):
        # Like the embedded database, the queue's tables appear on first use; a migrated
        # deployment (``switchboard migrate``) never runs DDL here.
        await ensure_queue_schema(libpq_dsn(settings.database_url))
    # Each run holds a connection only for short transactions: a small pool (8 kept, up
    # to 24 in a burst) serves a worker's 64 concurrent runs plus listeners and the
    # scheduler, and keeps a deployment's processes well under PostgreSQL's 100 clients.
    engine = create_engine(settings.database_url, pool_size=min(settings.runtime_slots + 4, 8))
    sessions = session_factory(engine)
    own_redis = redis is None
    redis_client = redis if redis is not None else create_redis(settings.redis_url)
    keys = Keys(prefix=settings.redis_prefix)
    config = runtime_config(settings, **runtime_overrides)
    metrics = metrics or Metrics()
    # HTTP tools share one client whose connections are egress-checked (skills.egress).
    http = egress_client(config.http_policy.egress)
    inbox = InboxStore(sessions=sessions)
    queue = RunQueue(database_url=settings.database_url, inbox=inbox)
    await queue.open()
    sampler = TurnSampler(
        store=ScoreStore(sessions=sessions),
        queue=queue,
        share=settings.eval_sample,
        observers=[metrics.observe_sample],
    )
    factory = model_factory or default_model_factory(settings, env)
    try:
        loaded = load_registry(settings.skills_dirs, env=env)
        parts = build_runtime(
            registry=loaded.registry,
            sessions=sessions,
            redis=redis_client,
            keys=keys,
            model_factory=factory,
            config=config,
            http=http,
            audit_keyring=settings.audit_keyring(),
            memory_ttl=settings.memory_ttl,
            max_checkpoints=settings.max_checkpoints,
            observers=[metrics.observe_run],
            limit_observers=[metrics.observe_refusal],
            sampler=sampler,
        )
        await parts.runtime.mcp.load(loaded.registry)  # MCP tool lists; failures degrade skills
        reloader = SkillReloader(
            registry=loaded.registry,
            dirs=[Path(d) for d in settings.skills_dirs],
            env=env,
            on_swap=[parts.runtime.forget_stale],
            observers=[metrics.observe_reload],
        )
        reloader.start_with(loaded)
        metrics.observe_reload(reloader.status)
        sources = describe_sources(loaded)
        for line in sources:
            log.info("%s", line)
        watcher = (
            asyncio.create_task(reloader.watch(), name="skill-reload")
            if watch_skills and settings.skills_reload and reloader.watched()
            else None
        )
        try:
            yield Services(
                settings=settings,
                engine=engine,
                sessions=sessions,
                redis=redis_client,
                keys=keys,
                locks=parts.locks,
                checkpointer=parts.checkpointer,
                registry=loaded.registry,
                runtime=parts.runtime,
                runs=parts.runs,
                http=http,
                approvals=parts.approvals,
                gate=parts.gate,
                rate_limiter=RateLimiter(redis=redis_client, keys=keys),
                audit=parts.audit,
                metrics=metrics,
                inbox=inbox,
                queue=queue,
                reloader=reloader,
                skill_sources=sources,
                sampler=sampler,
                model_factory=factory,
            )
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await sampler.idle()  # samples being written go in before SQL closes
    finally:
        await queue.close()
        await http.aclose()
        if own_redis:
            await redis_client.aclose()
        await engine.dispose()
