"""What the digest's model reads: the instructions and the transcript format."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import tzinfo
from typing import Final

from skills.context import SlackMessage
from skills.digest.stats import plain_text

__all__ = ["MAX_PROMPT_TRANSCRIPT_CHARS", "SYSTEM_PROMPT", "render_transcript"]

MAX_PROMPT_TRANSCRIPT_CHARS: Final = 24_000
_MAX_LINE_CHARS: Final = 400

SYSTEM_PROMPT: Final = """\
You write the digest of a Slack channel for a busy colleague at a payments company.
The channel is {channel} and the window is the last {window}; times are in {tz}.

Write a short summary of 3 to 6 bullet points in plain text: what happened, what is still
open or waiting for someone, and who is involved. Be concrete (systems, incidents, amounts
as written) and do not invent anything that is not in the transcript.

Exact figures follow; they are shown to the reader right below your summary, so do not
repeat or recompute them, and never contradict them.

{numbers}

The transcript, oldest first. Thread replies are indented under their message with "  > ".
Personal data has been masked as [card ****1234], [email ***@domain] and similar.

{transcript}
"""


def render_transcript(
    messages: Sequence[SlackMessage],
    replies: Mapping[str, Sequence[SlackMessage]],
    *,
    names: Mapping[str, str],
    tz: tzinfo,
    max_chars: int = MAX_PROMPT_TRANSCRIPT_CHARS,
) -> str:
    """``[HH:MM] Name: text`` blocks, replies indented; oldest blocks dropped to fit."""
    blocks: list[str] = []
    day = None
    for message in messages:
        local = message.time.astimezone(tz)
        lines = []
        if f"{local:%a %d %b}" != day:
            day = f"{local:%a %d %b}"
            lines.append(f"--- {day} ---")
        lines.append(_line(message, names, tz))
        lines.extend("  > " + _line(reply, names, tz) for reply in replies.get(message.ts, ()))
        blocks.append("\n".join(lines))
    kept: list[str] = []
    size = 0
    for block in reversed(blocks):
        if size + len(block) + 1 > max_chars:
            kept.append(f"({len(blocks) - len(kept)} earlier messages left out)")
            break
        kept.append(block)
        size += len(block) + 1
    return "\n".join(reversed(kept))


def _line(message: SlackMessage, names: Mapping[str, str], tz: tzinfo) -> str:
    author = names.get(message.user or "") or message.user_name or message.user or "someone"
    if message.bot:
        author += " (bot)"
    text = " ".join(plain_text(message.text, names).split())
    if len(text) > _MAX_LINE_CHARS:
        text = text[: _MAX_LINE_CHARS - 1].rstrip() + "…"
    return f"[{message.time.astimezone(tz):%H:%M}] {author}: {text}"
