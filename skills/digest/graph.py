"""The digest graph: ``collect`` → ``compute`` → ``write``.

* ``collect`` reads the request (``#C0PAYALERTS 24h``, ``<#C0PAYALERTS|payments-alerts> last
  12 hours``; by default the run's own channel and 24 hours), then the channel's messages
  and the threads that have replies, through ``runtime.context.slack`` — the run's
  access-checked reader, so a digest of a channel the person is not a member of (or of
  someone else's DM) is refused before anything is read. Text is PII-masked right away,
  so neither the state (checkpoints) nor the model ever holds the originals.
* ``compute`` derives the numbers with the pure functions of `skills.digest.stats` and
  renders them; code renders them, not the model, so they are always right.
* ``write`` asks the model for a short summary around those numbers and appends the final
  answer — title, summary, numbers — to ``messages`` as an AI message.

Problems the person can act on (no Slack history here, a channel they or the bot are not
in, an empty window) end the run early with a plain answer instead of an exception.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Checkpointer

from skills.access import AccessDenied, ConversationReader
from skills.context import RunContext, SlackMessage, SlackReaderError
from skills.digest.prompts import SYSTEM_PROMPT, render_transcript
from skills.digest.state import DigestState, MessageRow, from_row, to_row
from skills.digest.stats import compute_stats, render_numbers
from skills.pii import mask_text
from skills.tools.slack import resolve_names, zone

__all__ = ["DigestRequest", "build_digest_graph", "parse_request"]

log = logging.getLogger(f"switchboard.{__name__}")

DEFAULT_HOURS: Final = 24.0
MAX_HOURS: Final = 168.0
MAX_MESSAGES: Final = 1000
MAX_THREADS: Final = 50
"""Threads read for reply authors (most replies first); beyond that, counts only."""
_THREAD_READS_AT_ONCE: Final = 4

_CHANNEL_LINK: Final = re.compile(r"<#([CG][A-Z0-9]+)(?:\|([^>]*))?>")
# an id has a digit, so a shouted word ("digest CHARGEBACKS") is not taken for one
_CHANNEL_ID: Final = re.compile(r"(?<![\w#])#?([CG](?=[A-Z0-9]*\d)[A-Z0-9]{5,})\b")
_CHANNEL_NAME: Final = re.compile(r"(?<![\w<])#([a-z0-9][a-z0-9_-]*)")
_UNITS: Final = {"m": 1 / 60, "h": 1.0, "d": 24.0, "w": 168.0}
_WINDOW: Final = re.compile(
    r"\b(\d+(?:\.\d+)?)\s*(m|mins?|minutes?|h|hrs?|hours?|d|days?|w|wks?|weeks?)\b", re.I
)
_WORD_WINDOW: Final = re.compile(r"\b(?:last|past|this)\s+(hour|day|week)\b|\byesterday\b", re.I)


@dataclass(frozen=True, slots=True)
class DigestRequest:
    """What a digest request asks for. ``channel`` None means the run's own channel;
    ``channel_name`` is a ``#name`` that still needs resolving."""

    channel: str | None = None
    channel_name: str | None = None
    hours: float = DEFAULT_HOURS
    capped: bool = False


def parse_request(text: str) -> DigestRequest:
    """Channel and window from the request text (see the module docstring for forms)."""
    channel = None
    name = None
    link = _CHANNEL_LINK.search(text)
    if link:
        channel = link.group(1)
    else:
        found = _CHANNEL_ID.search(text)
        if found:
            channel = found.group(1)
        else:
            named = _CHANNEL_NAME.search(text)
            name = named.group(1) if named else None
    without_links = _CHANNEL_LINK.sub(" ", text)
    hours = DEFAULT_HOURS
    window = _WINDOW.search(without_links)
    if window:
        hours = float(window.group(1)) * _UNITS[window.group(2)[0].lower()]
    else:
        word = _WORD_WINDOW.search(without_links)
        if word:
            unit = (word.group(1) or "day").lower()
            hours = {"hour": 1.0, "day": 24.0, "week": 168.0}[unit]
    capped = hours > MAX_HOURS
    hours = min(max(hours, 1 / 60), MAX_HOURS)
    return DigestRequest(channel=channel, channel_name=name, hours=hours, capped=capped)


def _window_label(hours: float) -> str:
    if hours >= 24 and hours % 24 == 0:
        days = int(hours // 24)
        return "24 h" if days == 1 else f"{days} days"
    if hours < 1:
        return f"{round(hours * 60)} min"
    return f"{hours:g} h"


def _answer(text: str) -> dict[str, Any]:
    return {"messages": [AIMessage(content=text)], "done": True}


def _last_request(state: DigestState) -> str:
    for message in reversed(state["messages"]):
        if isinstance(message, HumanMessage):
            return str(message.text)
    return ""


def _context(runtime: Runtime[RunContext]) -> RunContext:
    if not isinstance(runtime.context, RunContext):
        raise TypeError("the digest graph must be run with context=RunContext(...)")
    return runtime.context


async def collect(state: DigestState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Parse the request and read the channel (and its threads) from Slack."""
    context = _context(runtime)
    if context.slack is None:
        return _answer("Slack history is not available here, so I can't make a digest.")
    reader = context.slack
    request = parse_request(_last_request(state))

    channel = request.channel or context.thread.channel
    if request.channel is None and request.channel_name is None and _is_dm(channel):
        # Asked in a DM or the Assistant panel: the person means some channel, not this
        # conversation with the bot.
        return _answer(
            "Which channel should I digest? Name it, for example `digest #payments-alerts 24h` "
            "(type # and pick the channel from the list)."
        )
    if request.channel_name is not None:
        own_name = await _channel_name(reader, context.thread.channel)
        if request.channel_name != own_name:
            return _answer(
                f"I can't look up #{request.channel_name} by name. Mention the channel as a "
                "link (type # and pick it from the list) and ask again."
            )
    try:
        await reader.check(channel)  # before anything of it is read, its name included
    except AccessDenied as exc:
        if exc.reason == "unknown":
            return _answer(_read_problem(channel, "channel_not_found"))
        return _answer(f"I can't make that digest: {exc}.")
    except SlackReaderError as exc:
        log.info("digest: %s", exc)
        return _answer(_read_problem(channel, exc.error))
    label = f"#{name}" if (name := await _channel_name(reader, channel)) else channel
    now = context.now()
    try:
        top_level = await reader.history(
            channel, oldest=now - timedelta(hours=request.hours), latest=now, limit=MAX_MESSAGES
        )
    except SlackReaderError as exc:
        log.info("digest: %s", exc)
        return _answer(_read_problem(label, exc.error))
    window = _window_label(request.hours)
    if not top_level:
        return _answer(f"No messages in {label} in the last {window}.")

    replies = await _read_threads(reader, channel, top_level)
    names = await resolve_names(reader, [*top_level, *(r for rs in replies.values() for r in rs)])
    return {
        "channel": channel,
        "channel_label": label,
        "hours": request.hours,
        "note": "the longest window is 7 days" if request.capped else None,
        "collected": [to_row(m, text=mask_text(m.text)) for m in top_level],
        "replies": {
            ts: [to_row(r, text=mask_text(r.text)) for r in thread]
            for ts, thread in replies.items()
        },
        "names": names,
        "done": False,
    }


def _is_dm(channel: str) -> bool:
    return channel.startswith("D")


async def _channel_name(reader: ConversationReader, channel: str) -> str | None:
    try:
        return await reader.channel_name(channel)
    except SlackReaderError:
        return None


def _read_problem(label: str, error: str) -> str:
    if error == "not_in_channel":
        return f"I can't read {label} because I'm not in it. Invite me and ask again."
    if error == "channel_not_found":
        return f"I couldn't find the channel {label}, or I have no access to it."
    return f"I couldn't read {label} right now (Slack said: {error}). Please try again later."


async def _read_threads(
    reader: ConversationReader, channel: str, messages: Sequence[SlackMessage]
) -> dict[str, list[SlackMessage]]:
    """Replies of the threads with replies (most replies first, at most MAX_THREADS)."""
    roots = sorted((m for m in messages if m.reply_count), key=lambda m: -m.reply_count)
    gate = asyncio.Semaphore(_THREAD_READS_AT_ONCE)

    async def read(root: SlackMessage) -> tuple[str, list[SlackMessage]] | None:
        async with gate:
            try:
                thread = await reader.thread(channel, root.ts, limit=MAX_MESSAGES)
            except SlackReaderError as exc:
                log.info("digest: thread %s skipped: %s", root.ts, exc)
                return None
        return root.ts, [m for m in thread if m.ts != root.ts]

    results = await asyncio.gather(*(read(root) for root in roots[:MAX_THREADS]))
    return dict(result for result in results if result is not None)


def _rows(rows: Sequence[MessageRow]) -> list[SlackMessage]:
    return [from_row(row) for row in rows]


async def compute(state: DigestState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The numbers (pure functions) and the transcript the model will read."""
    context = _context(runtime)
    tz_name = context.actor.tz or "UTC"
    tz = zone(tz_name)
    messages = _rows(state.get("collected", []))
    replies = {ts: _rows(rows) for ts, rows in state.get("replies", {}).items()}
    names = state.get("names", {})
    stats = compute_stats(messages, replies, names=names, tz=tz)
    return {
        "numbers": render_numbers(stats, tz=tz, tz_name=tz_name),
        "transcript": render_transcript(messages, replies, names=names, tz=tz),
    }


def _inert(text: str) -> str:
    """Model text made safe to post: no broadcast mentions, no masked data leaking."""
    text = re.sub(r"<!(channel|here|everyone)(?:\|[^>]*)?>", r"@\1", text)
    return mask_text(text.strip())


def _writer(model: BaseChatModel) -> Any:
    async def write(state: DigestState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        """The model's summary around the numbers; the final answer."""
        context = _context(runtime)
        label = state.get("channel_label", "the channel")
        window = _window_label(state.get("hours", DEFAULT_HOURS))
        numbers = state.get("numbers", "")
        prompt = SYSTEM_PROMPT.format(
            channel=label,
            window=window,
            tz=context.actor.tz or "UTC",
            numbers=numbers,
            transcript=state.get("transcript", ""),
        )
        request = f"Write the digest of {label} for the last {window}."
        try:
            reply = await model.ainvoke([SystemMessage(prompt), HumanMessage(request)])
            summary = _inert(str(reply.text))
        except Exception:
            # The numbers are still worth posting (scheduled digests especially); the
            # failure is logged with a reference for whoever looks into it.
            ref = uuid.uuid4().hex[:10]
            log.exception("digest: the model call failed ref=%s", ref)
            summary = f"(The summary could not be written this time, reference {ref}.)"
        title = f"*Digest of {label}, last {window}*"
        if note := state.get("note"):
            title += f" ({note})"
        text = "\n\n".join(part for part in (title, summary, numbers) if part)
        return {
            "messages": [AIMessage(content=text)],
            # the checkpoint keeps the answer, not the bulk it was made from
            "collected": [],
            "replies": {},
            "transcript": "",
        }

    return write


def _after_collect(state: DigestState) -> str:
    return END if state.get("done") else "compute"


def build_digest_graph(
    model: BaseChatModel, *, checkpointer: Checkpointer = None
) -> CompiledStateGraph[DigestState, RunContext, DigestState, DigestState]:
    """The compiled digest graph; run it with ``context=RunContext(...)``."""
    graph = StateGraph(DigestState, context_schema=RunContext)
    graph.add_node("collect", collect)
    graph.add_node("compute", compute)
    graph.add_node("write", _writer(model))
    graph.add_edge(START, "collect")
    graph.add_conditional_edges("collect", _after_collect, ["compute", END])
    graph.add_edge("compute", "write")
    graph.add_edge("write", END)
    return graph.compile(checkpointer=checkpointer, name="digest")
