"""Builds the process's parts from :class:`~bot.settings.Settings`, and closes them.

Every entry point (serve, socket, console, scheduler, sandbox, eval) opens the same
:class:`Services`; nothing is created at import time.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.settings import Settings
from skills.approvals import ApprovalService
from skills.context import HttpPolicy
from skills.egress import egress_client
from skills.limits import SkillGate
from skills.registry import SkillRegistry, load_registry
from skills.runtime import ModelFactory, Runtime, RuntimeConfig
from storage.approvals import ApprovalStore
from storage.audit import AuditLog
from storage.checkpoint import RedisCheckpointSaver
from storage.keys import Keys
from storage.limits import SkillLimitsStore
from storage.locks import RedisLocks
from storage.ratelimit import RateLimiter
from storage.redis import create_redis
from storage.runs import ChannelDefaults, RunStore, ThreadSkills
from storage.sql import create_engine, session_factory, upgrade

log = logging.getLogger(__name__)


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


def pii_key(settings: Settings) -> bytes:
    """The PII key: from ``SWITCHBOARD_PII_KEY``, else random for this process (embedded)."""
    if settings.pii_key is not None:
        return hashlib.sha256(settings.pii_key.get_secret_value().encode()).digest()
    if not settings.uses_embedded_redis:
        log.warning(
            "SWITCHBOARD_PII_KEY is not set: masked values typed by users cannot be resolved "
            "for tools after a restart or on another replica"
        )
    return secrets.token_bytes(32)


def default_model_factory(settings: Settings, env: Mapping[str, str]) -> ModelFactory:
    from skills.models import load_chat_model

    def factory(name: str) -> BaseChatModel:
        return load_chat_model(name, timeout=settings.model_timeout, env=env)

    return factory


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    model_factory: ModelFactory | None = None,
    env: Mapping[str, str] | None = None,
    redis: Redis | None = None,
    **runtime_overrides: Any,
) -> AsyncIterator[Services]:
    """Open SQL, Redis and the runtime; the embedded SQLite database migrates itself."""
    env = os.environ if env is None else env
    if settings.uses_embedded_sql:
        await upgrade(settings.database_url)
    # Enough connections for every concurrent run plus listeners and the scheduler.
    engine = create_engine(settings.database_url, pool_size=settings.max_concurrent_runs + 4)
    sessions = session_factory(engine)
    own_redis = redis is None
    redis_client = redis if redis is not None else create_redis(settings.redis_url)
    keys = Keys(prefix=settings.redis_prefix)
    options: dict[str, Any] = {
        "default_model": settings.model,
        "router_model": settings.router_model,
        "fallback_models": tuple(settings.fallback_models),
        "max_concurrent_runs": settings.max_concurrent_runs,
        "tool_result_max_chars": settings.tool_result_max_chars,
        "http_policy": HttpPolicy(allowed_hosts=tuple(settings.http_allowed_hosts)),
        "pii_key": pii_key(settings),
    }
    config = RuntimeConfig(**{**options, **runtime_overrides})
    # HTTP tools share one client whose connections are egress-checked (skills.egress).
    http = egress_client(config.http_policy.egress)
    try:
        checkpointer = RedisCheckpointSaver(
            redis=redis_client,
            keys=keys,
            ttl=settings.memory_ttl,
            max_checkpoints=settings.max_checkpoints,
        )
        loaded = load_registry(settings.skills_dirs, env=env)
        runs = RunStore(sessions=sessions)
        locks = RedisLocks(redis=redis_client, keys=keys)
        approval_store = ApprovalStore(sessions=sessions)
        audit = AuditLog(sessions=sessions, keyring=settings.audit_keyring())
        gate = SkillGate(store=SkillLimitsStore(sessions=sessions))
        runtime = Runtime(
            registry=loaded.registry,
            checkpointer=checkpointer,
            locks=locks,
            runs=runs,
            threads=ThreadSkills(sessions=sessions),
            channels=ChannelDefaults(sessions=sessions),
            model_factory=model_factory or default_model_factory(settings, env),
            http=http,
            config=config,
            ledger=approval_store,
            audit=audit,  # refused reads
            gate=gate,
        )
        approvals = ApprovalService(
            store=approval_store,
            audit=audit,
            runtime=runtime,
            locks=locks,
        )
        yield Services(
            settings=settings,
            engine=engine,
            sessions=sessions,
            redis=redis_client,
            keys=keys,
            locks=locks,
            checkpointer=checkpointer,
            registry=loaded.registry,
            runtime=runtime,
            runs=runs,
            http=http,
            approvals=approvals,
            gate=gate,
            rate_limiter=RateLimiter(redis=redis_client, keys=keys),
            audit=audit,
        )
    finally:
        await http.aclose()
        if own_redis:
            await redis_client.aclose()
        await engine.dispose()
