"""The stand-up workflow: prompt a user group by DM, collect replies, post one summary.

A stand-up firing opens a session (SQL, so it survives restarts), DMs each member the
prompt and remembers the DM each prompt went to. Until the window closes, a member's
messages in that DM are captured as their answer (:class:`StandupCollector`, called by the
bot's DM path before the normal answer path). When the window closes the leader posts the
summary once: who answered, blockers first, who did not answer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from scheduler.ports import Poster, PostFailed
from scheduler.triggers import format_run_time
from skills.pii import mask_text
from storage.schedules import ScheduleStore, StandupAnswer, StandupSession

log = logging.getLogger(f"switchboard.{__name__}")

_BLOCKER = re.compile(
    r"\b(block(?:ed|er|ers|ing)?|stuck|waiting (?:on|for)|need(?:s)? help|can'?t proceed)\b",
    re.IGNORECASE,
)
_NO_BLOCKER = re.compile(
    r"\b(no|none|zero|nothing)\b.{0,12}\bblock|\bblock(?:ers?|ed)?\b\W{0,3}\s*(none|no|n/?a|nothing)\b",
    re.IGNORECASE,
)
_MAX_ANSWER = 1200


def escape(text: str) -> str:
    """User text made inert for Slack mrkdwn: no mentions, links or broadcasts."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def blocker_lines(answer: str) -> list[str]:
    """Lines of an answer that report a blocker (``no blockers`` does not count)."""
    return [
        line.strip(" -•*\t")
        for line in answer.splitlines()
        if _BLOCKER.search(line) and not _NO_BLOCKER.search(line)
    ]


def prompt_text(session: StandupSession, *, tz: str = "UTC") -> str:
    """The DM each member gets."""
    closes = format_run_time(session.closes_at, tz)
    return (
        f":wave: {escape(session.prompt)}\n"
        f"_Reply in this conversation before {closes}; everything you write until then "
        f"goes into the summary in <#{session.channel_id}>._"
    )


def summary_text(
    session: StandupSession, answers: Sequence[StandupAnswer], *, tz: str = "UTC"
) -> str:
    """The summary posted to the channel (Slack mrkdwn; user text escaped)."""
    answered = [a for a in answers if a.answer.strip()]
    silent = [a for a in answers if not a.answer.strip()]
    day = format_run_time(session.opens_at, tz).rsplit(" ", 2)[0]
    lines = [f"*Stand-up summary · {day}* — {len(answered)} of {len(answers)} answered"]
    blockers = [(a.user_id, b) for a in answered for b in blocker_lines(a.answer)]
    if blockers:
        lines.append("")
        lines.append(":rotating_light: *Blockers*")
        lines.extend(f"• <@{user}>: {escape(text)[:300]}" for user, text in blockers)
    if answered:
        lines.append("")
        lines.append("*Answers*")
        for a in answered:
            body = escape(a.answer.strip())
            if len(body) > _MAX_ANSWER:
                body = body[:_MAX_ANSWER] + "…"
            quoted = "\n".join(f"> {line}" for line in body.splitlines() if line.strip())
            lines.append(f"<@{a.user_id}>\n{quoted}")
    if silent:
        lines.append("")
        lines.append("*No answer:* " + ", ".join(f"<@{a.user_id}>" for a in silent))
    if not answers:
        lines.append("_The user group had no members to ask._")
    return "\n".join(lines)


class StandupCollector:
    """Captures DM replies for open stand-ups; see :meth:`capture`."""

    def __init__(
        self,
        *,
        store: ScheduleStore,
        poster: Poster | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._poster = poster
        self._clock = clock

    async def capture(self, *, team: str, channel: str, user: str, text: str, ts: str) -> bool:
        """True when ``text`` (a DM from ``user`` in ``channel``) was a stand-up answer.

        The text is PII-masked before it is stored. The first answer gets a short
        acknowledgement in the DM.
        """
        if not text.strip():
            return False
        reply = await self._store.standups.capture_reply(
            user_id=user, channel=channel, text=mask_text(text.strip()), now=self._clock()
        )
        if reply is None:
            return False
        if reply.first and self._poster is not None:
            try:
                await self._poster.notice(
                    channel, "Thanks, noted for the stand-up. Add more here until it closes."
                )
            except PostFailed as exc:
                log.info("stand-up acknowledgement not posted: %s", exc.error)
        return True
