"""Built-in Slack tools: read a thread, read a channel, look up a person.

Each tool reads Slack through the run's :class:`~skills.access.ConversationReader`
(``runtime.context.slack``, never a global client), which lets the run's principal read
only conversations they may read (``skills/access.py``); a refused read is a tool error
saying why, and nothing of the conversation is fetched. Tools return compact text the
model can quote: one ``[HH:MM] Name: text`` line per
message, times in the asker's time zone, a day line whenever the date changes, and a size
cap that drops the oldest lines first (a thread keeps its root). Problems come back as tool
errors (``ToolMessage.status == "error"``) with a short reason the model can act on; no
exception from Slack ends the run.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta, tzinfo
from functools import wraps
from typing import Annotated, Any, Final, ParamSpec
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from langchain.tools import ToolRuntime
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langgraph.errors import GraphBubbleUp
from pydantic import Field

from skills.access import AccessDenied, ConversationReader
from skills.context import RunContext, SlackMessage, SlackReaderError

__all__ = [
    "MAX_TRANSCRIPT_CHARS",
    "format_transcript",
    "normalize_channel",
    "resolve_names",
    "slack_tools",
    "zone",
]

log = logging.getLogger(f"switchboard.{__name__}")

MAX_TRANSCRIPT_CHARS: Final = 12_000
"""What a read tool returns at most (about 3k tokens); older lines are dropped first."""
MAX_MESSAGE_CHARS: Final = 600
MAX_HOURS: Final = 168
MAX_LIMIT: Final = 1000
THREAD_LIMIT: Final = 1000

_CHANNEL_RE: Final = re.compile(
    r"^\s*(?:<#([CGD][A-Z0-9]+)(?:\|[^>]*)?>|#?([CGD][A-Z0-9]{2,}))\s*$"
)
_USER_RE: Final = re.compile(r"^\s*(?:<@([UW][A-Z0-9]+)(?:\|[^>]*)?>|@?([UW][A-Z0-9]{2,}))\s*$")

P = ParamSpec("P")


# --------------------------------------------------------------------------- helpers


def run_context(runtime: ToolRuntime[RunContext]) -> RunContext:
    """The run context, or a tool error when the tool runs outside a Switchboard run."""
    context = runtime.context
    if not isinstance(context, RunContext):
        raise ToolException("this tool needs a Switchboard run context, and there is none")
    return context


def slack_reader(context: RunContext) -> ConversationReader:
    if context.slack is None:
        raise ToolException("Slack history is not available here")
    return context.slack


def zone(name: str | None) -> tzinfo:
    """The IANA zone ``name``; UTC when it is missing or unknown (Slack sends odd values)."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("unknown time zone %r, using UTC", name)
    return ZoneInfo("UTC")


def normalize_channel(value: str) -> str | None:
    """``C0ABC``, ``#C0ABC`` or ``<#C0ABC|name>`` → ``C0ABC``; None when it is not an id."""
    match = _CHANNEL_RE.match(value)
    return (match.group(1) or match.group(2)) if match else None


def _normalize_user(value: str) -> str | None:
    match = _USER_RE.match(value)
    return (match.group(1) or match.group(2)) if match else None


def tool_errors(
    name: str,
) -> Callable[[Callable[P, Awaitable[str]]], Callable[P, Awaitable[str]]]:
    """Turn Slack failures and unexpected bugs into tool errors the model can read.

    A refused read becomes the refusal's sentence ("you are not a member of …"); a
    `SlackReaderError` its Slack error code; anything unexpected is logged with a reference
    id, and the model sees only that id, never internals.
    """

    def decorate(func: Callable[P, Awaitable[str]]) -> Callable[P, Awaitable[str]]:
        @wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> str:
            try:
                return await func(*args, **kwargs)
            except (ToolException, GraphBubbleUp):
                raise  # already meant for the model, or graph control flow (interrupts)
            except AccessDenied as exc:  # logged and audited by the reader
                if exc.reason == "unknown":  # what Slack itself would have answered
                    raise ToolException("Slack could not be read (channel_not_found)") from exc
                raise ToolException(str(exc)) from exc
            except SlackReaderError as exc:
                log.info("tool %s: %s", name, exc)
                raise ToolException(f"Slack could not be read ({exc.error})") from exc
            except Exception as exc:
                ref = uuid.uuid4().hex[:10]
                log.exception("tool %s failed ref=%s", name, ref)
                raise ToolException(f"{name} failed unexpectedly (reference {ref})") from exc

        return wrapper

    return decorate


async def resolve_names(
    reader: ConversationReader, messages: Sequence[SlackMessage]
) -> dict[str, str]:
    """User id → display name for every author, asking Slack only for names not given."""
    names: dict[str, str] = {}
    for message in messages:
        if message.user and message.user_name:
            names.setdefault(message.user, message.user_name)
    for user_id in {m.user for m in messages if m.user and m.user not in names}:
        try:
            user = await reader.user_info(user_id)
        except SlackReaderError:
            user = None
        names[user_id] = (user.real_name or user.name) if user else user_id
    return names


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > MAX_MESSAGE_CHARS:
        flat = flat[: MAX_MESSAGE_CHARS - 1].rstrip() + "…"
    return flat


def format_transcript(
    messages: Sequence[SlackMessage],
    *,
    names: Mapping[str, str],
    tz: tzinfo,
    max_chars: int = MAX_TRANSCRIPT_CHARS,
    keep_first: bool = False,
    reply_counts: bool = False,
) -> str:
    """``[HH:MM] Name: text`` lines (oldest first) with a ``--- Tue 14 May ---`` line per day.

    When the lines do not fit ``max_chars``, the oldest go first and a line says how many
    were left out; ``keep_first`` keeps the first message (a thread's root) regardless.
    """
    lines: list[tuple[str, str]] = []  # (day, line)
    for message in messages:
        local = message.time.astimezone(tz)
        author = names.get(message.user or "", message.user or "") or "someone"
        if message.bot:
            author = f"{author} (bot)"
        line = f"[{local:%H:%M}] {author}: {_one_line(message.text)}"
        if reply_counts and message.reply_count:
            line += f" ({message.reply_count} repl{'y' if message.reply_count == 1 else 'ies'})"
        lines.append((f"--- {local:%a %d %b} ---", line))

    def render(items: Sequence[tuple[str, str]]) -> list[str]:
        out: list[str] = []
        day = None
        for item_day, line in items:
            if item_day != day:
                out.append(item_day)
                day = item_day
            out.append(line)
        return out

    head = lines[:1] if keep_first else []
    tail = lines[len(head) :]
    dropped = 0
    while True:
        rendered = render([*head, *tail])
        if dropped:
            rendered.insert(len(render(head)), f"({dropped} earlier messages left out)")
        text = "\n".join(rendered)
        if len(text) <= max_chars or not tail:
            return text[:max_chars]
        # drop in chunks so very long channels do not take quadratic time
        step = max(1, len(tail) // 10)
        tail = tail[step:]
        dropped += step


# --------------------------------------------------------------------------- tools


@tool_errors("slack_read_thread")
async def read_thread(
    runtime: ToolRuntime[RunContext],
    channel: Annotated[
        str | None, Field(description="Channel id (C…); defaults to this conversation's channel")
    ] = None,
    thread_ts: Annotated[
        str | None,
        Field(description="Timestamp of the thread's first message; defaults to this thread"),
    ] = None,
) -> str:
    """Read a Slack thread (the root and its replies) as a compact transcript."""
    context = run_context(runtime)
    reader = slack_reader(context)
    channel_id = context.thread.channel
    if channel:
        found = normalize_channel(channel)
        if found is None:
            raise ToolException(f"{channel!r} is not a channel id; use an id like C0123ABC")
        channel_id = found
    ts = thread_ts or (context.thread.thread_ts if channel_id == context.thread.channel else None)
    if not ts:
        raise ToolException("no thread to read here; pass thread_ts")
    messages = await reader.thread(channel_id, ts, limit=THREAD_LIMIT)
    if not messages:
        return "The thread is empty."
    names = await resolve_names(reader, messages)
    tz = zone(context.actor.tz)
    replies = len(messages) - 1
    header = f"Thread in {channel_id}, {replies} repl{'y' if replies == 1 else 'ies'}:"
    body = format_transcript(
        messages,
        names=names,
        tz=tz,
        keep_first=True,
        max_chars=MAX_TRANSCRIPT_CHARS - len(header) - 1,
    )
    return f"{header}\n{body}"


@tool_errors("slack_read_channel")
async def read_channel(
    runtime: ToolRuntime[RunContext],
    channel: Annotated[
        str | None, Field(description="Channel id (C…); defaults to this conversation's channel")
    ] = None,
    hours: Annotated[
        float, Field(gt=0, le=MAX_HOURS, description="How far back to read, in hours")
    ] = 24,
    limit: Annotated[
        int, Field(ge=1, le=MAX_LIMIT, description="At most this many of the latest messages")
    ] = 100,
) -> str:
    """Read the latest top-level messages of a channel, with reply counts."""
    context = run_context(runtime)
    reader = slack_reader(context)
    channel_id = context.thread.channel
    if channel:
        found = normalize_channel(channel)
        if found is None:
            raise ToolException(f"{channel!r} is not a channel id; use an id like C0123ABC")
        channel_id = found
    now = context.now()
    messages = await reader.history(
        channel_id, oldest=now - timedelta(hours=hours), latest=now, limit=limit
    )
    label = await _channel_label(reader, channel_id)
    window = f"last {hours:g} h"
    if not messages:
        return f"No messages in {label} in the {window}."
    names = await resolve_names(reader, messages)
    count = len(messages)
    capped = " (the limit)" if count >= limit else ""
    header = f"{label}, {window}: {count} message{'s' if count != 1 else ''}{capped}, oldest first"
    body = format_transcript(
        messages,
        names=names,
        tz=zone(context.actor.tz),
        reply_counts=True,
        max_chars=MAX_TRANSCRIPT_CHARS - len(header) - 1,
    )
    return f"{header}\n{body}"


async def _channel_label(reader: ConversationReader, channel_id: str) -> str:
    try:
        name = await reader.channel_name(channel_id)
    except SlackReaderError:
        name = None
    return f"#{name} ({channel_id})" if name else channel_id


@tool_errors("slack_user_info")
async def user_info(
    runtime: ToolRuntime[RunContext],
    user: Annotated[str, Field(description="Slack user id (U…) or mention (<@U…>)")],
) -> str:
    """Look up a Slack user: name, title and time zone (with their local time now)."""
    context = run_context(runtime)
    reader = slack_reader(context)
    user_id = _normalize_user(user)
    if user_id is None:
        raise ToolException(f"{user!r} is not a user id; use an id like U0123ABC")
    found = await reader.user_info(user_id)
    if found is None:
        raise ToolException(f"no Slack user {user_id}")
    parts = [f"{found.real_name or found.name} (@{found.name}, {found.id})"]
    if found.is_bot:
        parts.append("bot")
    if found.title:
        parts.append(f"title: {found.title}")
    if found.tz:
        local = context.now().astimezone(zone(found.tz))
        parts.append(f"time zone: {found.tz} (local time {local:%a %H:%M}, UTC{local:%z})")
    return "; ".join(parts)


_TOOLS: Final[Mapping[str, tuple[str, Callable[..., Awaitable[str]]]]] = {
    "slack.read_thread": ("slack_read_thread", read_thread),
    "slack.read_channel": ("slack_read_channel", read_channel),
    "slack.user_info": ("slack_user_info", user_info),
}


def slack_tools() -> dict[str, BaseTool]:
    """The Slack tools keyed by spec name (``slack.read_thread`` …)."""
    return {
        spec_name: _structured(tool_name, coroutine)
        for spec_name, (tool_name, coroutine) in _TOOLS.items()
    }


def _structured(name: str, coroutine: Callable[..., Awaitable[Any]]) -> StructuredTool:
    return StructuredTool.from_function(
        coroutine=coroutine,
        name=name,
        description=(coroutine.__doc__ or name).strip(),
        handle_tool_error=True,
    )
