"""What a run knows about its surroundings: the thread, the person, and a Slack reader.

``skills/`` never imports Slack listener code. Callers (the bot, the scheduler, the console,
the sandbox, the evaluations) pass a :class:`SlackReader` implementation and, to let a run
read conversations other than its own, a :class:`ConversationAccess` port. The runtime
never hands either to tools: they get a :class:`skills.access.ConversationReader` bound to
the run's :class:`Principal` (``RunContext.slack``), which checks every read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

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

    def memory_id(self, skill: str) -> str:
        """The LangGraph thread of ``skill`` in this conversation.

        Each skill has its own memory within a Slack thread, so naming another skill in a
        thread never hands it what earlier skills read or were told (docs/security.md).
        """
        return f"{self.thread_id}/{skill}"

    @classmethod
    def parse(cls, thread_id: str) -> ThreadRef:
        team, channel, ts = thread_id.split(":", 2)
        return cls(team=team, channel=channel, thread_ts=None if ts == "-" else ts)


@dataclass(frozen=True, slots=True)
class Principal:
    """The person a run acts for, as Slack knows them: built once per turn (the bot's
    ``Directory`` fills it from ``users.info`` and user-group memberships) and passed to
    every tool through :class:`RunContext`. Every authorization decision in ``skills/`` is
    about a principal: which skills it may use, which conversations it may read.

    ``tz`` is an IANA zone name (Slack's ``users.info`` tz). ``team`` is the person's home
    team. ``is_restricted`` / ``is_ultra_restricted`` are Slack's multi- and single-channel
    guest flags; ``is_external`` means the person belongs to another organization (a Slack
    Connect user, or someone Slack does not know).
    """

    user_id: str
    name: str | None = None
    tz: str = "UTC"
    usergroups: frozenset[str] = field(default_factory=frozenset)
    is_bot: bool = False
    team: str | None = None
    is_restricted: bool = False
    is_ultra_restricted: bool = False
    is_external: bool = False

    @property
    def is_guest(self) -> bool:
        """A multi-channel or single-channel guest account."""
        return self.is_restricted or self.is_ultra_restricted


#: The older name of :class:`Principal`; the same class.
Actor = Principal


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
    """A person (or bot user) as ``users.info`` describes them.

    ``team_id`` / ``enterprise_id`` are the person's home team and Enterprise Grid org;
    ``is_restricted`` / ``is_ultra_restricted`` are the guest flags; ``is_stranger`` is
    Slack's mark for a Slack Connect user this workspace shares no channel with.
    """

    id: str
    name: str
    real_name: str | None = None
    tz: str | None = None
    title: str | None = None
    is_bot: bool = False
    team_id: str | None = None
    enterprise_id: str | None = None
    is_restricted: bool = False
    is_ultra_restricted: bool = False
    is_stranger: bool = False


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


ConversationKind = Literal["channel", "private", "mpim", "im", "unknown"]
"""A public channel, a private channel, a group DM, a DM, or one Slack does not show us."""


@dataclass(frozen=True, slots=True)
class Membership:
    """What Slack says about a principal and a conversation.

    ``member`` is True when the principal is a member of it; for a DM (``im``) that means
    it is the principal's own DM with the bot.
    """

    kind: ConversationKind
    member: bool


@runtime_checkable
class ConversationAccess(Protocol):
    """The port that answers "is this principal in conversation X?" (see ``skills/access.py``
    for the rule built on it). The bot implements it over the Web API; the static sample
    workspace over its member lists. Failing to ask Slack raises :class:`SlackReaderError`
    (reads then fail closed)."""

    async def membership(self, principal: Principal, conversation: str) -> Membership: ...


@runtime_checkable
class AuditSink(Protocol):
    """Where security-relevant refusals are recorded (``storage.audit.AuditLog``)."""

    async def append(
        self,
        event: str,
        *,
        actor: str,
        request_id: str | None = None,
        args_hash: str | None = None,
        summary: str = "",
        at: datetime | None = None,
    ) -> object: ...


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
    actor: Principal
    # Access-checked reads for `actor` (None: no Slack here). Tools never see a raw reader.
    slack: _access.ConversationReader | None = None
    http: httpx.AsyncClient | None = None  # shared by the runtime; tools never make their own
    http_policy: HttpPolicy = field(default_factory=HttpPolicy)
    clock: Callable[[], datetime] = _utcnow
    # Tool call id -> approval request id, for calls a person approved in this run; such a
    # call carries an Idempotency-Key derived from the request and goes through the ledger.
    approvals: Mapping[str, str] = field(default_factory=dict)
    ledger: ExecutionLedger | None = None

    def now(self) -> datetime:
        return self.clock()


# At the end: the access layer builds on the types above (and RunContext's annotation
# names its reader), so it is imported once they exist, whichever module is imported first.
import skills.access as _access  # noqa: E402
