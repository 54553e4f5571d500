"""Who may read which Slack conversation: the one place ``skills/`` decides it.

The rule, for a run acting for a :class:`~skills.context.Principal`:

* the run's own conversation (where the person asked, or where a schedule posts, which
  the scheduler checks for the owner before it fires) may be read;
* another conversation only if the principal is a member of it;
* a DM only if it is the principal's own DM with the bot; a group DM only by its members.

Membership comes from a :class:`~skills.context.ConversationAccess` port (the bot asks
Slack, briefly cached). Without a port only the run's own conversation can be read.

Tools and the digest never get a raw :class:`~skills.context.SlackReader`: the runtime
wraps it in a :class:`ConversationReader` bound to the run's principal and conversation.
Its reads are named differently (``thread``, ``history``) from the raw reader's
(``thread_messages``, ``channel_messages``), and ``tests/security/test_authz_structure.py``
fails the build when any other module under ``skills/`` calls the raw ones.

A refused read raises :class:`AccessDenied` (tools turn it into a tool error the model
reads), is logged, and is audited as ``refused-read`` with who, what and why; never with
any content, which is not fetched at all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from skills.context import (
    AuditSink,
    ConversationAccess,
    Principal,
    SlackMessage,
    SlackReader,
    SlackUser,
)

__all__ = [
    "REFUSED_READ",
    "AccessDenied",
    "ConversationReader",
    "Refusal",
    "Verdict",
    "decide",
    "refusal_text",
]

log = logging.getLogger(f"switchboard.{__name__}")

#: The audit event of a refused read.
REFUSED_READ: Final = "refused-read"

Refusal = Literal["not_member", "not_your_dm", "unknown", "unverified"]
"""Why a read was refused: not a member; someone else's DM; a conversation Slack does not
show us; no way to check membership."""

_TEXTS: Final[dict[str, str]] = {
    "not_member": "you are not a member of {where}, so I can't read it for you",
    "not_your_dm": (
        "{where} is someone else's direct-message conversation; I can only read your own"
    ),
    "unknown": "I couldn't find the conversation {where}, or it isn't one you can read",
    "unverified": "I can only read this conversation here, not {where}",
}


def refusal_text(conversation: str, reason: Refusal) -> str:
    """The sentence a person (or the model, as a tool error) gets for a refused read."""
    return _TEXTS[reason].format(where=conversation)


class AccessDenied(Exception):
    """The principal may not read ``conversation``; the message says why, briefly."""

    def __init__(self, conversation: str, reason: Refusal) -> None:
        self.conversation = conversation
        self.reason: Refusal = reason
        super().__init__(refusal_text(conversation, reason))


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer for one conversation: why it may be read (``current``, ``member``,
    ``own_dm``), or the :data:`Refusal`."""

    reason: str
    refusal: Refusal | None = None

    @property
    def allowed(self) -> bool:
        return self.refusal is None


def _refused(reason: Refusal) -> Verdict:
    return Verdict(reason, reason)


async def decide(
    principal: Principal,
    conversation: str,
    *,
    current: str | None,
    access: ConversationAccess | None,
) -> Verdict:
    """Whether ``principal`` may read ``conversation`` from a run in ``current``.

    ``current`` None means no conversation is exempt (creating a schedule for a channel,
    say). Raises :class:`~skills.context.SlackReaderError` when Slack cannot be asked.
    """
    if current is not None and conversation == current:
        return Verdict("current")
    if access is None:
        return _refused("unverified")
    membership = await access.membership(principal, conversation)
    if membership.kind == "unknown":
        return _refused("unknown")
    if membership.kind == "im":
        return Verdict("own_dm") if membership.member else _refused("not_your_dm")
    return Verdict("member") if membership.member else _refused("not_member")


class ConversationReader:
    """Slack reads for one run, each checked for the run's principal (``RunContext.slack``).

    ``source`` is the raw reader (kept private), ``current`` the run's own conversation,
    ``access`` the membership port (None: only ``current`` is readable), ``audit`` where
    refusals are recorded. Verdicts are kept for the run, so a tool that reads a channel
    twice asks Slack once.
    """

    __slots__ = (
        "_audit",
        "_current",
        "_membership",
        "_principal",
        "_raw_reader",
        "_refused",
        "_run_id",
        "_skill",
        "_verdicts",
    )

    def __init__(
        self,
        *,
        source: SlackReader,
        principal: Principal,
        current: str,
        access: ConversationAccess | None = None,
        audit: AuditSink | None = None,
        skill: str = "",
        run_id: str = "",
    ) -> None:
        self._raw_reader = source
        self._principal = principal
        self._current = current
        self._membership = access
        self._audit = audit
        self._skill = skill
        self._run_id = run_id
        self._verdicts: dict[str, Verdict] = {}
        self._refused: list[str] = []

    @property
    def principal(self) -> Principal:
        return self._principal

    @property
    def current(self) -> str:
        """The run's own conversation."""
        return self._current

    @property
    def refused(self) -> tuple[str, ...]:
        """Conversations a read was refused for in this run, in order (ids only)."""
        return tuple(self._refused)

    async def verdict(self, conversation: str) -> Verdict:
        """Whether the principal may read ``conversation`` (no audit, nothing read)."""
        found = self._verdicts.get(conversation)
        if found is None:
            found = await decide(
                self._principal, conversation, current=self._current, access=self._membership
            )
            self._verdicts[conversation] = found
        return found

    async def check(self, conversation: str) -> None:
        """Raise :class:`AccessDenied` (logged and audited) unless the read is allowed."""
        reason = (await self.verdict(conversation)).refusal
        if reason is None:
            return
        self._refused.append(conversation)
        log.warning(
            "read refused user=%s conversation=%s reason=%s skill=%s run=%s",
            self._principal.user_id,
            conversation,
            reason,
            self._skill,
            self._run_id,
        )
        if self._audit is not None:
            try:
                await self._audit.append(
                    REFUSED_READ,
                    actor=self._principal.user_id,
                    summary=f"{self._skill} run {self._run_id}: {conversation} ({reason})",
                )
            except Exception:  # the refusal stands even when the audit log is unreachable
                log.exception("refused read not audited conversation=%s", conversation)
        raise AccessDenied(conversation, reason)

    # -- reads --------------------------------------------------------------------------

    async def thread(
        self, conversation: str, thread_ts: str, *, limit: int = 200
    ) -> Sequence[SlackMessage]:
        """The root and replies of a thread, oldest first (checked first)."""
        await self.check(conversation)
        return await self._raw_reader.thread_messages(conversation, thread_ts, limit=limit)

    async def history(
        self,
        conversation: str,
        *,
        oldest: datetime,
        latest: datetime | None = None,
        limit: int = 1000,
    ) -> Sequence[SlackMessage]:
        """Top-level messages in a time window, oldest first (checked first)."""
        await self.check(conversation)
        return await self._raw_reader.channel_messages(
            conversation, oldest=oldest, latest=latest, limit=limit
        )

    async def channel_name(self, conversation: str) -> str | None:
        """The name of a conversation the principal may read; None for any other (a
        private channel's name is not for everyone) and for DMs."""
        if not (await self.verdict(conversation)).allowed:
            return None
        return await self._raw_reader.channel_name(conversation)

    async def user_info(self, user_id: str) -> SlackUser | None:
        """A person's directory entry (names, title, zone): not conversation content."""
        return await self._raw_reader.user_info(user_id)
