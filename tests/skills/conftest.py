"""Runtime fixtures: a Runtime over each SQL and Redis backend with scripted models.

Runtimes come from the composition root's one builder (:func:`switchboard.runtime.build_runtime`),
so the tests run the runtime production runs: approval ledger, audit log and skill gate included.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from langchain_core.language_models import BaseChatModel
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from skills.catalog import load_registry
from skills.mcp import McpToolbox
from skills.models.offline import OfflineChatModel
from skills.registry import SkillRegistry
from skills.runtime import Runtime, RuntimeConfig
from storage.audit import AuditKeyring
from storage.keys import Keys
from storage.runs import RunStore
from storage.sql import create_engine, session_factory
from switchboard.runtime import build_runtime
from tests.conftest import Backend

TEST_PII_KEY = b"k" * 32
TEST_AUDIT_KEY = "test-audit-key-0123456789abcdef-0123"


@dataclass
class RuntimeKit:
    """Builds runtimes that share one SQL database and one Redis (like replicas do)."""

    engine: AsyncEngine
    redis: Redis
    keys: Keys
    http: httpx.AsyncClient

    def registry(self, env: Mapping[str, str] | None = None) -> SkillRegistry:
        return load_registry([], env=dict(env or {})).registry

    def runtime(
        self,
        models: Mapping[str, BaseChatModel] | Callable[[str], BaseChatModel] | None = None,
        *,
        registry: SkillRegistry | None = None,
        config: RuntimeConfig | None = None,
        mcp: McpToolbox | None = None,
        **overrides: Any,
    ) -> Runtime:
        if models is None:
            factory: Callable[[str], BaseChatModel] = lambda _name: OfflineChatModel()  # noqa: E731
        elif callable(models):
            factory = models
        else:
            table = dict(models)

            def factory(name: str) -> BaseChatModel:
                return table.get(name) or OfflineChatModel()

        sessions = session_factory(self.engine)
        # The router gets its own (offline, keyword-scoring) model so that scripted models
        # only answer the skill's own calls.
        base = config or RuntimeConfig(
            pii_key=TEST_PII_KEY, retry_initial_delay=0.01, router_model="router"
        )
        if overrides:
            base = replace(base, **overrides)
        return build_runtime(
            registry=registry or self.registry(),
            sessions=sessions,
            redis=self.redis,
            keys=self.keys,
            model_factory=factory,
            config=base,
            http=self.http,
            audit_keyring=AuditKeyring.parse(TEST_AUDIT_KEY),
            mcp=mcp,
        ).runtime

    def runs(self) -> RunStore:
        return RunStore(sessions=session_factory(self.engine))


@pytest.fixture
async def kit(backend: Backend, keys: Keys) -> AsyncIterator[RuntimeKit]:
    """A runtime kit over each backend (SQLite + fakeredis, PostgreSQL + real Redis)."""
    engine = create_engine(backend.database_url)
    try:
        async with httpx.AsyncClient() as http:
            yield RuntimeKit(engine=engine, redis=backend.redis, keys=keys, http=http)
    finally:
        await engine.dispose()
