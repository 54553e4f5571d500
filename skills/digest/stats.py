"""The digest's numbers: pure functions of the messages, computed by code, never by the model.

Definitions (what the numbers section promises the reader):

* **messages**: top-level messages in the window plus their thread replies (Slack's reply
  counts, so replies are counted even for threads that were not read in full);
* **people**: distinct human authors (bots excluded) of the messages read;
* **top posters**: humans with the most messages, ties by name;
* **top threads**: top-level messages with the most replies, ties oldest first; a
  conversation with a bot (at least half of the replies read are from bots: someone
  asking Switchboard something) is not a busy thread;
* **unanswered question**: a top-level human message with a ``?`` outside links, mentions
  and code, that has no replies or only replies from the asker (a bot's answer is an
  answer);
* **busiest hour**: the hour of the day, in the reader's time zone, with the most messages
  (ties: the earlier hour).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Final

from skills.context import SlackMessage

__all__ = [
    "DigestStats",
    "Poster",
    "Question",
    "ThreadStat",
    "busiest_hour",
    "compute_stats",
    "is_question",
    "plain_text",
    "render_numbers",
    "top_posters",
    "top_threads",
    "unanswered_questions",
]

PREVIEW_CHARS: Final = 90

_SLACK_MARKUP: Final = re.compile(r"<([^<>]*)>")
_URL: Final = re.compile(r"\bhttps?://\S+")
_CODE: Final = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Poster:
    name: str
    count: int


@dataclass(frozen=True, slots=True)
class ThreadStat:
    ts: str
    author: str
    text: str
    replies: int


@dataclass(frozen=True, slots=True)
class Question:
    ts: str
    author: str
    text: str


@dataclass(frozen=True, slots=True)
class DigestStats:
    """Everything the numbers section shows."""

    message_count: int
    top_level_count: int
    reply_count: int
    bot_message_count: int
    people_count: int
    top_posters: tuple[Poster, ...]
    top_threads: tuple[ThreadStat, ...]
    unanswered: tuple[Question, ...]
    busiest_hour: tuple[int, int] | None
    """(hour of day in the reader's zone, messages in it), None without messages."""


def plain_text(text: str, names: Mapping[str, str]) -> str:
    """Slack markup made inert: ``<@U1>`` → ``@Name``, ``<#C1|x>`` → ``#x``, links → label.

    Quoting ``<@U…>`` or ``<!here>`` back into Slack would notify people again.
    """

    def replace(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            return "@" + (label or names.get(target[1:], target[1:]))
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!"):
            return "@" + (label or target[1:].split("^")[0])
        return label or target

    # Slack escapes &, < and > in message text; shown text is escaped once, when posted.
    plain = _SLACK_MARKUP.sub(replace, text)
    return plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def bot_conversation(message: SlackMessage, replies: Mapping[str, Sequence[SlackMessage]]) -> bool:
    """A thread that is someone's conversation with a bot: at least half of the replies
    read are from bots (Switchboard answering a mention, say)."""
    thread = replies.get(message.ts) or ()
    bots = sum(1 for reply in thread if reply.bot)
    return bool(thread) and 2 * bots >= len(thread)


def is_question(text: str) -> bool:
    """A ``?`` in the prose, not in a link, a mention or code."""
    prose = _CODE.sub(" ", text)
    prose = _SLACK_MARKUP.sub(" ", prose)
    prose = _URL.sub(" ", prose)
    return "?" in prose


def _preview(text: str, names: Mapping[str, str]) -> str:
    flat = " ".join(plain_text(text, names).split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1].rstrip() + "…"


def _author(message: SlackMessage, names: Mapping[str, str]) -> str:
    if message.user and message.user in names:
        return names[message.user]
    return message.user_name or message.user or "someone"


def unanswered_questions(
    messages: Sequence[SlackMessage], replies: Mapping[str, Sequence[SlackMessage]]
) -> list[SlackMessage]:
    """Top-level human questions nobody but the asker replied to (see module docstring).

    ``replies`` maps a root ``ts`` to its replies; a root with replies that is missing from
    it (its thread was not read) counts as answered, since we cannot tell.
    """
    found = []
    for message in messages:
        if message.bot or not is_question(message.text):
            continue
        if message.reply_count == 0:
            found.append(message)
            continue
        thread = replies.get(message.ts)
        if thread is not None and all(reply.user == message.user for reply in thread):
            found.append(message)
    return found


def top_threads(
    messages: Sequence[SlackMessage],
    *,
    limit: int = 3,
    replies: Mapping[str, Sequence[SlackMessage]] | None = None,
) -> list[SlackMessage]:
    """Top-level messages with the most replies (ties: oldest first), not counting
    conversations with a bot (:func:`bot_conversation`)."""
    read = replies or {}
    with_replies = [m for m in messages if m.reply_count > 0 and not bot_conversation(m, read)]
    return sorted(with_replies, key=lambda m: (-m.reply_count, float(m.ts)))[:limit]


def top_posters(
    messages: Sequence[SlackMessage], names: Mapping[str, str], *, limit: int = 3
) -> list[Poster]:
    """Humans with the most messages (ties by name)."""
    counts = Counter(_author(m, names) for m in messages if not m.bot and m.user)
    return [
        Poster(name, count) for name, count in sorted(counts.items(), key=lambda i: (-i[1], i[0]))
    ][:limit]


def busiest_hour(messages: Sequence[SlackMessage], tz: tzinfo) -> tuple[int, int] | None:
    """(hour of day in ``tz``, message count) with the most messages; ties: earlier hour."""
    counts = Counter(m.time.astimezone(tz).hour for m in messages)
    if not counts:
        return None
    hour, count = min(counts.items(), key=lambda item: (-item[1], item[0]))
    return hour, count


def compute_stats(
    messages: Sequence[SlackMessage],
    replies: Mapping[str, Sequence[SlackMessage]],
    *,
    names: Mapping[str, str],
    tz: tzinfo,
    top: int = 3,
) -> DigestStats:
    """The numbers for top-level ``messages`` and the ``replies`` read for them."""
    read = [*messages, *(reply for thread in replies.values() for reply in thread)]
    reply_count = sum(m.reply_count for m in messages)
    bot_count = sum(1 for m in read if m.bot)
    return DigestStats(
        message_count=len(messages) + reply_count,
        top_level_count=len(messages),
        reply_count=reply_count,
        bot_message_count=bot_count,
        people_count=len({m.user for m in read if m.user and not m.bot}),
        top_posters=tuple(top_posters(read, names, limit=top)),
        top_threads=tuple(
            ThreadStat(m.ts, _author(m, names), _preview(m.text, names), m.reply_count)
            for m in top_threads(messages, limit=top, replies=replies)
        ),
        unanswered=tuple(
            Question(m.ts, _author(m, names), _preview(m.text, names))
            for m in unanswered_questions(messages, replies)
        ),
        busiest_hour=busiest_hour(read, tz),
    )


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else (plural or noun + 's')}"


def _when(ts: str, tz: tzinfo) -> str:
    return SlackMessage(ts=ts, user=None, text="").time.astimezone(tz).strftime("%a %H:%M")


def render_numbers(stats: DigestStats, *, tz: tzinfo, tz_name: str, max_questions: int = 5) -> str:
    """The numbers section, in Slack mrkdwn, exactly as the reader sees it."""
    lines = ["*By the numbers*"]
    lines.append(
        f"• {_plural(stats.message_count, 'message')}: {stats.top_level_count} in the channel, "
        f"{_plural(stats.reply_count, 'thread reply', 'thread replies')}"
        + (f"; {stats.bot_message_count} from bots" if stats.bot_message_count else "")
    )
    people = f"• {_plural(stats.people_count, 'person', 'people')} active"
    if stats.top_posters:
        people += "; most active: " + ", ".join(f"{p.name} ({p.count})" for p in stats.top_posters)
    lines.append(people)
    if stats.busiest_hour is not None:
        hour, count = stats.busiest_hour
        lines.append(
            f"• Busiest hour: {hour:02d}:00-{(hour + 1) % 24:02d}:00 {tz_name} "
            f"({_plural(count, 'message')})"
        )
    if stats.top_threads:
        lines.append(f"• Busiest threads (times in {tz_name}):")
        lines.extend(
            f"    {index}. {t.author}, {_when(t.ts, tz)}: “{t.text}” "
            f"({_plural(t.replies, 'reply', 'replies')})"
            for index, t in enumerate(stats.top_threads, 1)
        )
    if stats.unanswered:
        lines.append(f"• Questions without an answer: {len(stats.unanswered)} (times in {tz_name})")
        lines.extend(
            f"    ◦ {q.author}, {_when(q.ts, tz)}: “{q.text}”"
            for q in stats.unanswered[:max_questions]
        )
        if len(stats.unanswered) > max_questions:
            lines.append(f"    ◦ and {len(stats.unanswered) - max_questions} more")
    else:
        lines.append("• Questions without an answer: none")
    return "\n".join(lines)
