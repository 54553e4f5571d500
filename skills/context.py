"""What a run knows about its surroundings: the thread, the person, and a Slack reader.

``skills/`` never imports Slack listener code. Callers (the bot, the scheduler, the console,
the sandbox, the evaluations) pass a :class:`SlackReader` implementation; built-in tools read
it from the run context (``ToolRuntime.context``), never from a global.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

import httpx

from skills.egress import EgressPolicy, Resolver


@dataclass(frozen=True, slots=True)
class ThreadRef:
    """A conversation: one LangGraph thread per Slack thread, or per DM without a thread."""

    team: str
    channel: str
    thread_ts: str | None = None

    @property
    def thread_id(self) -> str:
        return f"{self.team}:{self.channel}:{self.thread_ts or '-'}"

    @classmethod
    def parse(cls, thread_id: str) -> ThreadRef:
        team, channel, ts = thread_id.split(":", 2)
        return cls(team=team, channel=channel, thread_ts=None if ts == "-" else ts)


@dataclass(frozen=True, slots=True)
class Actor:
    """The person a run acts for. ``tz`` is an IANA zone name (Slack's ``users.info`` tz)."""

    user_id: str
    name: str | None = None
    tz: str = "UTC"
    usergroups: frozenset[str] = field(default_factory=frozenset)
    is_bot: bool = False


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """A message as tools see it: user names resolved, text PII-masked by the middleware."""

    ts: str
    user: str | None
    text: str
    user_name: str | None = None
    thread_ts: str | None = None
    reply_count: int = 0
    bot: bool = False

    @property
    def time(self) -> datetime:
        from datetime import UTC

        return datetime.fromtimestamp(float(self.ts), UTC)


@dataclass(frozen=True, slots=True)
class SlackUser:
    id: str
    name: str
    real_name: str | None = None
    tz: str | None = None
    title: str | None = None
    is_bot: bool = False


class SlackReaderError(Exception):
    """Slack could not be read (channel not found, not in channel, rate limited…)."""

    def __init__(self, method: str, error: str) -> None:
        self.method = method
        self.error = error
        super().__init__(f"{method} failed: {error}")


@runtime_checkable
class SlackReader(Protocol):
    """The small read-only Slack interface that tools and the digest skill use."""

    async def thread_messages(
        self, channel: str, thread_ts: str, *, limit: int = 200
    ) -> Sequence[SlackMessage]:
        """The root and replies of a thread, oldest first."""
        ...

    async def channel_messages(
        self, channel: str, *, oldest: datetime, latest: datetime | None = None, limit: int = 1000
    ) -> Sequence[SlackMessage]:
        """Top-level messages of a channel in a time window, oldest first (paginated)."""
        ...

    async def user_info(self, user_id: str) -> SlackUser | None: ...

    async def usergroup_members(self, usergroup_id: str) -> frozenset[str]: ...

    async def channel_name(self, channel: str) -> str | None: ...


@runtime_checkable
class PriorExecution(Protocol):
    """An approved call that already ran: its outcome and (masked) result text."""

    @property
    def ok(self) -> bool: ...

    @property
    def result(self) -> str: ...


@runtime_checkable
class ExecutionLedger(Protocol):
    """Records approved tool calls before and after they run (see ``skills/approvals.py``)."""

    async def begin_execution(self, request_id: str, key: str) -> PriorExecution | None: ...

    async def finish_execution(self, request_id: str, *, ok: bool, result: str) -> None: ...


def _utcnow() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """Limits for HTTP tools: where they may go, timeout, response size cap.

    Public hosts are always allowed; ``allowed_hosts`` (``SWITCHBOARD_HTTP_ALLOWED_HOSTS``)
    lists the internal ones that are allowed too (see ``skills.egress`` for the entry
    forms). ``resolver`` replaces the system resolver (tests inject one).
    """

    allowed_hosts: tuple[str, ...] = ()
    timeout: float = 10.0
    max_response_bytes: int = 1_000_000
    resolver: Resolver | None = field(default=None, compare=False)

    @property
    def egress(self) -> EgressPolicy:
        """The egress policy these settings describe."""
        return EgressPolicy.from_entries(self.allowed_hosts, resolver=self.resolver)


@dataclass(frozen=True, slots=True)
class RunContext:
    """The LangGraph runtime context of one run (``create_agent(context_schema=RunContext)``).

    Tools receive it as ``runtime.context`` through ``ToolRuntime``.
    """

    run_id: str
    skill: str
    thread: ThreadRef
    actor: Actor
    slack: SlackReader | None = None
    http: httpx.AsyncClient | None = None  # shared by the runtime; tools never make their own
    http_policy: HttpPolicy = field(default_factory=HttpPolicy)
    clock: Callable[[], datetime] = _utcnow
    # Tool call id -> approval request id, for calls a person approved in this run; such a
    # call carries an Idempotency-Key derived from the request and goes through the ledger.
    approvals: Mapping[str, str] = field(default_factory=dict)
    ledger: ExecutionLedger | None = None

    def now(self) -> datetime:
        return self.clock()
