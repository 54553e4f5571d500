"""Shared fixtures and helpers for the security suite: a workspace with things worth stealing, and a
search of every place a secret could leak to.

``authz_workspace`` extends the bot scenario's fake Slack (``tests/bot/conftest.py``):

* ``U0ANA`` (Ana, a member of #hr-private) and ``U0BEN`` (Ben, not), both in #general;
* ``G0HRPRIV`` (#hr-private): a private channel the bot is in, holding :data:`HR_SECRET`;
* ``D0ANA``: Ana's DM with the bot, holding :data:`DM_SECRET`;
* ``U0GUEST`` (a multi-channel guest) and ``U0EXT`` (a Slack Connect user from ``T0OTHER``),
  both in #general.

:func:`leaks` says where a secret turned up: the scripted models' requests, anything the
bot sent to Slack, the log, any SQL row, any Redis value. Each attack asserts it is
nowhere; each positive control asserts the same search finds it when access is allowed.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpcore
import pytest
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from sqlalchemy import select

from skills.middleware.untrusted import CLOSE, TRUSTED_TOOLS, opening, unwrap
from storage.models import AuditEntry, Base
from switchboard.logs import BODY_LOGGERS
from tests.bot.conftest import BotEnv, BotFactory, make_bot, slack_api, slack_bot  # noqa: F401
from tests.fakes.chat import ScriptedChatModel, reply
from tests.fakes.slack_api import FakeSlackApi

__all__ = [
    "ANA_DM",
    "DM_SECRET",
    "HR_CHANNEL",
    "HR_SECRET",
    "all_logs",
    "audit_events",
    "authz_workspace",
    "bot_posts",
    "echo_tool_result",
    "ephemerals",
    "leaks",
]

HR_SECRET = "SALARY-REVIEW-7781 band changes for the payments team"
DM_SECRET = "DM-ONLY-4410 my appointment moved to Tuesday"
HR_CHANNEL = "G0HRPRIV"
ANA_DM = "D0ANA"

#: Web API methods that send something to Slack (posts, edits, ephemerals, views).
WRITE_METHODS = frozenset(
    {
        "chat.postMessage",
        "chat.update",
        "chat.postEphemeral",
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
        "views.open",
        "views.update",
        "views.publish",
    }
)


@pytest.fixture
def authz_workspace(slack_api: FakeSlackApi) -> FakeSlackApi:  # noqa: F811
    slack = slack_api
    slack.add_user("U0ANA", "ana", real_name="Ana Lima", tz="Europe/Lisbon")
    slack.add_user("U0BEN", "ben", real_name="Ben Okafor", tz="America/Chicago")
    slack.add_user("U0GUEST", "gina", real_name="Gina Contractor", is_restricted=True)
    slack.add_user("U0EXT", "eve", real_name="Eve Partner", team_id="T0OTHER")
    slack.set_members(
        "C0GENERAL", ["U0SAM", "U0CAROL", "U0DEV", "U0ANA", "U0BEN", "U0GUEST", "U0EXT"]
    )
    slack.add_channel(HR_CHANNEL, "hr-private", members=["U0ANA", "U0CAROL"], is_private=True)
    root = slack.add_message(HR_CHANNEL, f"{HR_SECRET} (draft, do not share)", user="U0CAROL")
    slack.add_message(HR_CHANNEL, "noted, will review", user="U0ANA", thread_ts=root)
    slack.add_im("U0ANA", ANA_DM)
    slack.add_message(ANA_DM, DM_SECRET, user="U0ANA")
    return slack


@pytest.fixture
def all_logs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> pytest.LogCaptureFixture:
    """Every log record at every level (slack_sdk logs request and response bodies at DEBUG,
    so whatever the bot fetched would be here too), unmasked: a handler an earlier test
    left on the root logger (``switchboard.logs``, masking records in place) is taken off
    for the test, so the search sees what the code logged, not what our handler shows."""
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    caplog.set_level(logging.DEBUG)
    # switchboard.logs holds the body-logging SDKs at INFO (and a few noisy ones at WARNING)
    # once any earlier test configured logging: open them up for this test, restored after.
    for name in (*BODY_LOGGERS, "httpx", "httpcore", "aiosqlite", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def echo_tool_result(messages: list[BaseMessage]) -> AIMessage:
    """A scripted model step that repeats the last tool result to the channel: if a read
    had returned anything, the bot would post it."""
    results = [m for m in messages if isinstance(m, ToolMessage)]
    return reply(f"Here is what I read: {results[-1].content if results else '(nothing)'}")


def model_text(models: Iterable[ScriptedChatModel]) -> str:
    return "\n".join(
        json.dumps(m.model_dump(), default=str)
        for model in models
        for call in model.calls
        for m in call
    )


async def leaks(
    env: BotEnv,
    secret: str,
    *,
    models: Iterable[ScriptedChatModel] = (),
    caplog: pytest.LogCaptureFixture | None = None,
) -> set[str]:
    """Where ``secret`` appears: ``model``, ``slack``, ``log``, ``sql:<table>``, ``redis``."""
    found: set[str] = set()
    if secret in model_text(models):
        found.add("model")
    sent = [c.args for c in env.slack.calls() if c.method in WRITE_METHODS]
    if secret in json.dumps(sent, default=str) or any(
        secret in json.dumps(e, default=str) for e in env.slack.ephemeral
    ):
        found.add("slack")
    if caplog is not None and secret in caplog.text:
        found.add("log")
    async with env.services.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = (await conn.execute(select(table))).all()
            if any(secret in repr(tuple(row)) for row in rows):
                found.add(f"sql:{table.name}")
    redis = env.services.redis
    needle = secret.encode()
    async for key in redis.scan_iter(match=f"{env.services.keys.prefix}:*"):
        if needle in await _redis_value(redis, key):
            found.add("redis")
            break
    return found


async def _redis_value(redis: Any, key: bytes | str) -> bytes:
    kind = await redis.type(key)
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    parts: list[Any]
    if kind == "string":
        parts = [await redis.get(key)]
    elif kind == "hash":
        parts = [v for kv in (await redis.hgetall(key)).items() for v in kv]
    elif kind == "zset":
        parts = await redis.zrange(key, 0, -1)
    elif kind == "list":
        parts = await redis.lrange(key, 0, -1)
    elif kind == "set":
        parts = list(await redis.smembers(key))
    else:
        parts = []
    return b"\n".join(p if isinstance(p, bytes) else str(p).encode() for p in parts if p)


async def audit_events(env: BotEnv, event: str | None = None) -> list[AuditEntry]:
    """The audit log, oldest first (only ``event`` rows when given)."""
    rows = [row async for row in _audit_rows(env)]
    return [row for row in rows if event is None or row.event == event]


async def _audit_rows(env: BotEnv) -> Any:
    async with env.services.sessions() as session:
        for row in await session.scalars(select(AuditEntry).order_by(AuditEntry.seq)):
            yield row


def ephemerals(env: BotEnv, user: str) -> list[str]:
    """Texts of the ephemeral messages shown to ``user``."""
    return [str(e.get("text", "")) for e in env.slack.ephemeral if e.get("user") == user]


def bot_posts(env: BotEnv, channel: str, thread_ts: str | None = None) -> list[str]:
    """Texts the bot posted in a channel (or one thread), as they are now."""
    return [
        str(m.get("text", ""))
        for m in env.slack.messages(channel, thread_ts)
        if m.get("bot_id") == env.slack.bot_id
    ]


# -- egress and consumption attacks: skills on disk, scripted resolvers, a loopback fence --

CRM_TOKEN = "crm-t0ken-9f8e7d6c5b4a"

ORDERS_SKILL = """\
name: orders
description: Look up orders in the CRM.
instructions: Look up orders for the support team.
tools:
  - name: lookup_order
    description: Fetch an order by id.
    http:
      method: GET
      url: "${CRM_URL}/orders/{order_id}"
      headers: {Authorization: "Bearer ${CRM_TOKEN}"}
    parameters:
      order_id: {type: string}
"""


def write_skill(folder: Path, text: str, name: str = "skill.yaml") -> Path:
    """Write a skill spec into ``folder`` (for ``SWITCHBOARD_SKILLS_DIR``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def tool_results(model: ScriptedChatModel) -> list[ToolMessage]:
    """The tool results the model was shown, over all its calls, with their untrusted-data
    delimiters taken off (after checking that every untrusted result carried them; the
    delimiters themselves are tested in test_untrusted_content_and_links.py)."""
    seen: dict[str, ToolMessage] = {}
    for call in model.calls:
        for message in call:
            if isinstance(message, ToolMessage):
                text = message.content
                if isinstance(text, str) and (message.name or "") not in TRUSTED_TOOLS:
                    assert text.startswith(opening(message.name or "tool")), text[:200]
                    assert text.endswith(CLOSE), text[-200:]
                    message = message.model_copy(update={"content": unwrap(text)})
                seen[message.tool_call_id] = message
    return list(seen.values())


def requests_text(model: ScriptedChatModel) -> str:
    """Everything every model request contained, as one string."""
    return "\n".join(_text(m) for call in model.calls for m in call)


def _text(message: BaseMessage) -> str:
    return f"{message.content} {getattr(message, 'tool_calls', '')}"


class ScriptedResolver:
    """A resolver that answers from a table (or a sequence of answers per name) and
    records every question, so tests can aim names at addresses without DNS."""

    def __init__(self, answers: dict[str, Sequence[str] | list[Sequence[str]]]) -> None:
        self._answers = answers
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append((host, port))
        answer = self._answers.get(host)
        if answer is None:
            raise OSError(f"no such host {host}")
        if answer and isinstance(answer[0], list | tuple):
            sequence: list[Sequence[str]] = answer  # type: ignore[assignment]
            index = sum(1 for name, _ in self.calls if name == host) - 1
            return sequence[min(index, len(sequence) - 1)]
        return answer  # type: ignore[return-value]


class LoopbackOnlyBackend(httpcore.AnyIOBackend):
    """A network backend that connects to loopback only and records every attempt.

    Tests that aim tools at non-loopback internal ranges use it as a fence: were the egress
    check broken, the attempt is recorded and fails here instead of leaving the machine.
    """

    def __init__(self) -> None:
        self.attempts: list[tuple[str, int]] = []

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        self.attempts.append((host, port))
        if not ipaddress.ip_address(host).is_loopback:
            raise httpcore.ConnectError(f"test fence: refusing to connect to {host}")
        return await super().connect_tcp(host, port, *args, **kwargs)


def joined(texts: Iterable[str]) -> str:
    return "\n".join(texts)
