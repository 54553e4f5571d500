"""The stand-up workflow: prompt a user group by DM, collect replies, post one summary.

A stand-up firing opens a session (SQL, so it survives restarts), DMs each member the
prompt and remembers the DM each prompt went to. Until the window closes, a member's
messages in that DM are captured as their answer (:class:`StandupCollector`, called by the
bot's DM path before the normal answer path). When the window closes the leader posts the
summary once: who answered, blockers first (:func:`blocker_lines`), who did not answer.
The words are the bot's (:class:`~scheduler.ports.ScheduleWords`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime

from scheduler.ports import Poster, PostFailed, ScheduleWords
from skills.pii import mask_text
from storage.schedules import ScheduleStore

log = logging.getLogger(f"switchboard.{__name__}")

_BLOCKER = re.compile(
    r"\b(block(?:ed|er|ers|ing)?|stuck|waiting (?:on|for)|need(?:s)? help|can'?t proceed)\b",
    re.IGNORECASE,
)
_NO_BLOCKER = re.compile(
    r"\b(no|none|zero|nothing)\b.{0,12}\bblock|\bblock(?:ers?|ed)?\b\W{0,3}\s*(none|no|n/?a|nothing)\b",
    re.IGNORECASE,
)


def blocker_lines(answer: str) -> list[str]:
    """Lines of an answer that report a blocker (``no blockers`` does not count)."""
    return [
        line.strip(" -•*\t")
        for line in answer.splitlines()
        if _BLOCKER.search(line) and not _NO_BLOCKER.search(line)
    ]


class StandupCollector:
    """Captures DM replies for open stand-ups; see :meth:`capture`."""

    def __init__(
        self,
        *,
        store: ScheduleStore,
        poster: Poster | None = None,
        words: ScheduleWords | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._poster = poster
        self._words = words
        self._clock = clock

    async def capture(self, *, team: str, channel: str, user: str, text: str, ts: str) -> bool:
        """True when ``text`` (a DM from ``user`` in ``channel``) was a stand-up answer.

        The text is PII-masked before it is stored. The first answer gets a short
        acknowledgement in the DM (when built with a poster and its words).
        """
        if not text.strip():
            return False
        reply = await self._store.standups.capture_reply(
            user_id=user, channel=channel, text=mask_text(text.strip()), now=self._clock()
        )
        if reply is None:
            return False
        if reply.first and self._poster is not None and self._words is not None:
            try:
                await self._poster.notice(channel, self._words.standup_noted())
            except PostFailed as exc:
                log.info("stand-up acknowledgement not posted: %s", exc.error)
        return True
