"""What the scheduler needs from Slack, as small interfaces the bot side implements.

The scheduler never imports Slack listener code: the process that runs it injects a
:class:`Poster` (the bot's Web API client behind it), the :class:`ScheduleWords` it posts
(Slack mrkdwn, written in ``bot/views``), a way to resolve people, and the periodic
:class:`Maintenance` jobs its leader runs (the approval expiry sweep).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, runtime_checkable

from skills.context import Principal
from storage.schedules import Schedule, StandupAnswer, StandupSession


@dataclass(frozen=True, slots=True)
class Posted:
    """Where a message landed: ``channel`` is the real id (a ``D…`` id for a DM)."""

    channel: str
    ts: str


@dataclass(frozen=True, slots=True)
class DropNotice:
    """Who is told, and what (chat markup), when a queued message can't be posted after
    all: a scheduled answer's owner, since nobody in the channel saw anything of it."""

    to: str
    text: str


class PostFailed(Exception):
    """Slack refused or could not take a message; ``error`` is Slack's code."""

    def __init__(self, error: str) -> None:
        self.error = error
        super().__init__(f"Slack refused the message: {error}")


class PostDeferred(Exception):
    """Slack did not take the message for now (``reason``: ``ratelimited``, or
    ``server_error`` / ``unreachable`` when it may have been posted and is checked
    first), and it was queued instead: it is posted as soon as Slack takes it (no ``ts``
    yet). Not a failure of the firing."""

    def __init__(self, retry_in: float, *, reason: str = "ratelimited") -> None:
        self.retry_in = retry_in
        self.reason = reason
        super().__init__(f"Slack: {reason}; the message is posted in ~{retry_in:.0f} s")


@runtime_checkable
class Poster(Protocol):
    """Posts for the scheduler. Raise :class:`PostFailed` when Slack says no."""

    async def answer(
        self,
        channel: str,
        text: str,
        *,
        skill: str,
        run_id: str | None,
        dropped: DropNotice | None = None,
    ) -> Posted:
        """Post a skill's answer (model Markdown, to be masked and escaped) to ``channel``;
        :class:`PostDeferred` when Slack refused it for now and it was queued (then
        ``dropped`` is sent if it can't be posted after all)."""
        ...

    async def notice(self, channel: str, text: str, *, later: bool = False) -> Posted:
        """Post a short Switchboard notice (Slack mrkdwn we wrote) to a channel, or to a
        person's DM when ``channel`` is a user id. ``later``: when Slack refuses it for now,
        queue it (:class:`PostDeferred`) rather than fail; for a notice nothing waits on
        (a stand-up's summary), not one whose ``ts`` is needed at once."""
        ...


class ScheduleWords(Protocol):
    """What the scheduler says, in the chat's markup (the bot writes Slack mrkdwn).

    The scheduler decides *what* to tell whom; this port decides how it reads, so no
    ``<@U…>``, ``<#C…>`` or mrkdwn is written in ``scheduler/``.
    """

    def user(self, user_id: str) -> str:
        """A person, as a mention."""
        ...

    def channel(self, channel_id: str) -> str:
        """A conversation, as a link."""
        ...

    def standup_prompt(self, session: StandupSession, *, tz: str) -> str:
        """The DM each member of a stand-up gets."""
        ...

    def standup_summary(
        self, session: StandupSession, answers: Sequence[StandupAnswer], *, tz: str
    ) -> str:
        """The summary posted to the stand-up's channel (user text made inert)."""
        ...

    def standup_noted(self) -> str:
        """The acknowledgement of a member's first answer."""
        ...

    def firing_failed(
        self, schedule: Schedule, *, when: str, reason: str, max_failures: int
    ) -> str:
        """The owner's DM on the first failure of a streak."""
        ...

    def schedule_paused(self, schedule: Schedule, *, when: str, reason: str, streak: int) -> str:
        """The owner's DM when failures paused the schedule."""
        ...

    def answer_dropped(self, schedule: Schedule, *, when: str) -> str:
        """The owner's DM when a firing's answer, queued because Slack did not take it
        at once, could not be posted after all."""
        ...


#: Resolves a Slack user id to the principal a scheduled run acts for (its owner).
ActorResolver = Callable[[str], Awaitable[Principal]]
#: Members of a Slack user group (``usergroups.users.list``).
GroupMembers = Callable[[str], Awaitable[frozenset[str]]]


@dataclass(frozen=True, slots=True)
class Maintenance:
    """A periodic housekeeping job, e.g. expiring approvals that nobody decided.

    The scheduler leader runs ``run()`` when it starts leading and then every ``every``;
    with several replicas only the leader runs it. A failure is logged and the job runs
    again at its next turn.
    """

    name: str
    every: timedelta
    run: Callable[[], Awaitable[object]]
