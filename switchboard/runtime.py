"""The one runtime builder.

Every process (serve, socket, sandbox, console, scheduler, worker), the evaluations, the
benchmarks and the tests build their :class:`~skills.runtime.Runtime` with
:func:`build_runtime`, so they all run skills the same way: the same stores, the same
approval ledger and audit log, the same kill switches and budgets, the same fallback
models. What differs between them (the model factory, the HTTP client, the clock, the
evaluation's own stores) is an argument.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from evals.runner import EvalStores, RuntimeBuilder
from skills.approvals import ApprovalService
from skills.context import HttpPolicy
from skills.limits import LimitObserver, SkillGate
from skills.mcp import McpToolbox
from skills.models import load_chat_model
from skills.registry import SkillRegistry
from skills.runtime import ModelFactory, RunObserver, Runtime, RuntimeConfig
from skills.sampling import TurnSampler
from storage.approvals import ApprovalStore
from storage.audit import AuditKeyring, AuditLog, keyring_for
from storage.checkpoint import RedisCheckpointSaver
from storage.keys import Keys
from storage.limits import SkillLimitsStore
from storage.locks import RedisLocks
from storage.runs import ChannelDefaults, RunStore, ThreadSkills
from switchboard.settings import Settings

__all__ = [
    "RuntimeParts",
    "build_runtime",
    "default_model_factory",
    "eval_runtimes",
    "pii_key",
    "runtime_config",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RuntimeParts:
    """The runtime and the stores and services built around it (shared, not rebuilt)."""

    runtime: Runtime
    checkpointer: RedisCheckpointSaver
    locks: RedisLocks
    runs: RunStore
    ledger: ApprovalStore
    audit: AuditLog
    gate: SkillGate
    approvals: ApprovalService


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


def runtime_config(settings: Settings, **overrides: Any) -> RuntimeConfig:
    """The runtime's tunables from ``settings``; ``overrides`` replace single fields."""
    options: dict[str, Any] = {
        "default_model": settings.model,
        "router_model": settings.router_model,
        "fallback_models": tuple(settings.fallback_models),
        "max_concurrent_runs": settings.runtime_slots,
        # The queue already runs a thread's turns one at a time; the Redis thread lease
        # stays as a second guard, short, so a turn re-claimed from a killed worker does
        # not wait long for the dead holder's lease.
        "thread_lease_ttl": timedelta(seconds=10),
        "tool_result_max_chars": settings.tool_result_max_chars,
        "http_policy": HttpPolicy(allowed_hosts=tuple(settings.http_allowed_hosts)),
        "prices": settings.price_table(),
    }
    options.update(overrides)
    if "pii_key" not in options:
        options["pii_key"] = pii_key(settings)
    return RuntimeConfig(**options)


def default_model_factory(
    settings: Settings, env: Mapping[str, str], *, http_client: httpx.AsyncClient | None = None
) -> ModelFactory:
    """Chat models by name (``offline``, ``openai:gpt-4.1-mini``…), with the model timeout.

    ``http_client`` carries OpenAI-compatible models' HTTP (``switchboard eval --record``
    records a provider's exchanges through it); other providers do not take one.
    """

    def factory(name: str) -> BaseChatModel:
        extra: dict[str, Any] = {}
        if http_client is not None and name.strip().lower().startswith("openai:"):
            extra["http_async_client"] = http_client
        return load_chat_model(name, timeout=settings.model_timeout, env=env, **extra)

    return factory


def build_runtime(
    *,
    registry: SkillRegistry,
    sessions: async_sessionmaker[AsyncSession],
    redis: Redis,
    keys: Keys,
    model_factory: ModelFactory,
    config: RuntimeConfig,
    http: httpx.AsyncClient | None,
    audit_keyring: AuditKeyring,
    memory_ttl: timedelta = timedelta(days=7),
    max_checkpoints: int = 20,
    clock: Callable[[], datetime] | None = None,
    observers: Iterable[RunObserver] = (),
    limit_observers: Iterable[LimitObserver] = (),
    mcp: McpToolbox | None = None,
    sampler: TurnSampler | None = None,
) -> RuntimeParts:
    """The runtime over ``sessions`` (SQL) and ``redis``, with its approval ledger, audit
    log, skill gate and approval service. ``audit_keyring`` keys the audit chain (a
    deployment's is ``Settings.audit_keyring()``); ``clock`` fixes the time (evaluations)."""
    checkpointer = RedisCheckpointSaver(
        redis=redis, keys=keys, ttl=memory_ttl, max_checkpoints=max_checkpoints
    )
    locks = RedisLocks(redis=redis, keys=keys)
    runs = RunStore(sessions=sessions)
    ledger = ApprovalStore(sessions=sessions)
    audit = AuditLog(sessions=sessions, keyring=audit_keyring)
    timed: dict[str, Any] = {} if clock is None else {"clock": clock}
    gate = SkillGate(
        store=SkillLimitsStore(sessions=sessions), observers=list(limit_observers), **timed
    )
    runtime = Runtime(
        registry=registry,
        checkpointer=checkpointer,
        locks=locks,
        runs=runs,
        threads=ThreadSkills(sessions=sessions),
        channels=ChannelDefaults(sessions=sessions),
        model_factory=model_factory,
        http=http,
        config=config,
        observers=list(observers),
        ledger=ledger,
        audit=audit,  # refused reads
        gate=gate,
        mcp=mcp,
        sampler=sampler,
        **timed,
    )
    approvals = ApprovalService(store=ledger, audit=audit, runtime=runtime, locks=locks, **timed)
    return RuntimeParts(
        runtime=runtime,
        checkpointer=checkpointer,
        locks=locks,
        runs=runs,
        ledger=ledger,
        audit=audit,
        gate=gate,
        approvals=approvals,
    )


def eval_runtimes(settings: Settings) -> RuntimeBuilder:
    """What ``switchboard eval`` builds its runtimes with: :func:`build_runtime` over the
    evaluation's own stores, configured from ``settings`` as production is (fallback
    models, limits…) except for the fields the evaluation sets. The audit chain of an
    evaluation lives in its throw-away database, so it is keyed for this process only
    (no key file is written beside the deployment's database)."""
    keyring = keyring_for("sqlite+aiosqlite://", None)

    def build(
        *,
        stores: EvalStores,
        registry: SkillRegistry,
        http: httpx.AsyncClient,
        model_factory: ModelFactory,
        clock: Callable[[], datetime],
        **config: Any,
    ) -> RuntimeParts:
        return build_runtime(
            registry=registry,
            sessions=stores.sessions,
            redis=stores.redis,
            keys=stores.keys,
            model_factory=model_factory,
            config=runtime_config(settings, **config),
            http=http,
            audit_keyring=keyring,
            clock=clock,
        )

    return build
