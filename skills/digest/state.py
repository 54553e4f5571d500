"""The digest graph's state.

``messages`` works like an agent's (``add_messages``), so the runtime calls the digest the
way it calls any agent and reads the last AI message. Everything else is plain JSON-like
data, so any checkpointer stores it without custom types; message text is PII-masked
before it enters the state, and the bulky fields are emptied once the digest is written.
"""

from __future__ import annotations

from typing import Annotated, NotRequired, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

from skills.context import SlackMessage

__all__ = ["DigestState", "MessageRow", "from_row", "to_row"]


class MessageRow(TypedDict):
    """A `SlackMessage` as plain data."""

    ts: str
    user: str | None
    text: str
    user_name: str | None
    thread_ts: str | None
    reply_count: int
    bot: bool


def to_row(message: SlackMessage, *, text: str | None = None) -> MessageRow:
    return MessageRow(
        ts=message.ts,
        user=message.user,
        text=message.text if text is None else text,
        user_name=message.user_name,
        thread_ts=message.thread_ts,
        reply_count=message.reply_count,
        bot=message.bot,
    )


def from_row(row: MessageRow) -> SlackMessage:
    return SlackMessage(**row)


class DigestState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    channel: NotRequired[str]
    """The channel id the digest is about."""
    channel_label: NotRequired[str]
    """``#payments-alerts`` (or the id when the name is unknown)."""
    hours: NotRequired[float]
    """The window, in hours before now."""
    note: NotRequired[str | None]
    """Something about the request the reader should know (a capped window)."""
    collected: NotRequired[list[MessageRow]]
    """Top-level messages in the window, oldest first, text masked."""
    replies: NotRequired[dict[str, list[MessageRow]]]
    """Root ts → replies of the threads read, text masked."""
    names: NotRequired[dict[str, str]]
    """User id → display name."""
    numbers: NotRequired[str]
    """The numbers section, rendered by code."""
    transcript: NotRequired[str]
    """What the model reads: masked transcript, capped in size."""
    done: NotRequired[bool]
    """True when ``collect`` already answered (an error or an empty window)."""
