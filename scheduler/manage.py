"""Managing schedules: create (parse, validate, echo), pause, resume, delete, run now.

Used by the Slack side (``bot/schedules.py``) and the operator CLI alike. Every change is
written to SQL first and then announced on the :class:`~scheduler.feed.ChangeFeed`, so the
leader — on whichever replica — applies it within a second; nothing here needs to be
the leader.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from scheduler._phrases import PhraseError, parse_duration
from scheduler.calendar import BusinessCalendar
from scheduler.errors import InvalidSchedule, NotAllowed, ScheduleNotFound
from scheduler.feed import CHANGED, ChangeFeed
from scheduler.triggers import (
    DEFAULT_GRACE,
    MIN_INTERVAL,
    BusinessDayTrigger,
    FiringPlan,
    Trigger,
    TriggerError,
    describe_schedule,
    due_firings,
    format_run_time,
    parse_trigger,
)
from storage.schedules import Schedule, ScheduleStore

__all__ = [
    "STANDUP",
    "Created",
    "OneLine",
    "ScheduleManager",
    "StandupOptions",
    "parse_one_line",
    "schedule_trigger",
]

#: The skill name that means "the stand-up workflow" rather than a runtime skill.
STANDUP = "standup"
DEFAULT_STANDUP_WINDOW = timedelta(hours=2)
DEFAULT_STANDUP_PROMPT = (
    "Stand-up time! Reply here with what you did, what you're doing next, "
    "and anything blocking you."
)
_MAX_WINDOW = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class StandupOptions:
    """A stand-up: DM the members of ``usergroup`` and summarise after ``window``."""

    usergroup: str
    window: timedelta = DEFAULT_STANDUP_WINDOW
    prompt: str = DEFAULT_STANDUP_PROMPT

    def to_dict(self) -> dict[str, Any]:
        return {
            "usergroup": self.usergroup,
            "window_seconds": int(self.window.total_seconds()),
            "prompt": self.prompt,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StandupOptions:
        return cls(
            usergroup=str(data.get("usergroup", "")),
            window=timedelta(seconds=int(data.get("window_seconds", 7200))),
            prompt=str(data.get("prompt") or DEFAULT_STANDUP_PROMPT),
        )


@dataclass(frozen=True, slots=True)
class Created:
    """A saved schedule and the echo to show: description plus the next three runs."""

    schedule: Schedule
    echo: str


@dataclass(frozen=True, slots=True)
class OneLine:
    """``/switchboard schedule SKILL [#channel] WHEN [for 30m] [tz ZONE] [-- text]`` parsed."""

    skill: str
    when: str
    channel: str | None = None  # an id (C…/G…), or "#name" still to resolve
    tz: str | None = None
    text: str = ""
    usergroup: str | None = None
    window: timedelta | None = None
    extra: dict[str, str] = field(default_factory=dict)


ONE_LINE_HELP = (
    "`/switchboard schedule SKILL #channel WHEN [tz ZONE] [-- input]`, e.g. "
    "`/switchboard schedule digest #payments-alerts every weekday at 9:00 tz Asia/Dubai -- 24h`; "
    "stand-up: `/switchboard schedule standup @team #channel every weekday at 9:30 for 1h`"
)

_CHANNEL = re.compile(
    r"^(?:<#([CG][A-Z0-9]+)(?:\|[^>]*)?>|#?([CG][A-Z0-9]{5,})|(#[a-z0-9][a-z0-9_.-]*))$"
)
_GROUP = re.compile(r"^(?:<!subteam\^([A-Z0-9]+)(?:\|[^>]*)?>|(S[A-Z0-9]{3,}))$")
_TZ = re.compile(r"\s+(?:tz|in\s+zone)\s+([A-Za-z_]+(?:/[A-Za-z0-9_+\-]+)*)\s*$", re.IGNORECASE)
_WINDOW = re.compile(r"\s+for\s+(\S.*?)\s*$", re.IGNORECASE)


def parse_one_line(text: str) -> OneLine:
    """Split the one-line form; the ``WHEN`` part is validated later, with the zone."""
    body, sep, tail = text.partition(" -- ")
    if not sep and body.rstrip().endswith(" --"):
        body = body.rstrip()[:-3]
    words = body.split()
    if len(words) < 2:
        raise InvalidSchedule(f"say what and when: {ONE_LINE_HELP}")
    skill = words[0].lower()
    rest = words[1:]
    usergroup = None
    if skill == STANDUP:
        group = _GROUP.match(rest[0]) if rest else None
        if group is None:
            raise InvalidSchedule(
                "a stand-up needs a user group right after `standup` (type @ and pick the "
                "group), e.g. `/switchboard schedule standup @team #channel every weekday at 9:30`"
            )
        usergroup = group.group(1) or group.group(2)
        rest = rest[1:]
    channel = None
    if rest:
        found = _CHANNEL.match(rest[0])
        if found:
            channel = found.group(1) or found.group(2) or found.group(3)
            rest = rest[1:]
    when = " ".join(rest)
    tz = None
    zone = _TZ.search(" " + when)
    if zone:
        tz = zone.group(1)
        when = (" " + when)[: zone.start()].strip()
    window = None
    if skill == STANDUP:
        span = _WINDOW.search(" " + when)
        if span:
            try:
                seconds, _days = parse_duration(span.group(1))
            except PhraseError as error:
                raise InvalidSchedule(f"stand-up window: {error.problem}") from None
            window = timedelta(seconds=seconds)
            when = (" " + when)[: span.start()].strip()
    if not when:
        raise InvalidSchedule(f"say when it should run: {ONE_LINE_HELP}")
    return OneLine(
        skill=skill,
        when=when,
        channel=channel,
        tz=tz,
        text=tail.strip(),
        usergroup=usergroup,
        window=window,
    )


def _who(by: str) -> str:
    """A Slack user id as a mention; anything else (``cli``) as it is."""
    return f"<@{by}>" if by[:1] in ("U", "W") else by


def schedule_trigger(
    row: Schedule,
    *,
    calendar: BusinessCalendar | None = None,
    min_interval: timedelta = MIN_INTERVAL,
) -> Trigger:
    """The row's trigger; business-day triggers follow the configured ``calendar``."""
    trigger = Trigger.from_dict(dict(row.trigger), min_interval=min_interval)
    if calendar is not None and isinstance(trigger, BusinessDayTrigger):
        from dataclasses import replace

        trigger = replace(trigger, calendar=calendar)
    return trigger


def describe_row(
    row: Schedule,
    *,
    now: datetime,
    calendar: BusinessCalendar | None = None,
    min_interval: timedelta = MIN_INTERVAL,
) -> str:
    """``every weekday at 09:00 (Europe/Lisbon)`` for a stored schedule."""
    try:
        return schedule_trigger(row, calendar=calendar, min_interval=min_interval).description()
    except TriggerError:
        return "(unreadable trigger)"


class ScheduleManager:
    """Creates and changes schedules; see the module docstring.

    ``skills`` lists the runnable skill names; ``calendar`` serves ``every business day``;
    ``min_interval`` lowers the shortest interval (tests only); ``clock`` is the time.
    """

    def __init__(
        self,
        *,
        store: ScheduleStore,
        feed: ChangeFeed | None,
        skills: Callable[[], Collection[str]],
        calendar: BusinessCalendar | None = None,
        default_grace: timedelta = DEFAULT_GRACE,
        min_interval: timedelta = MIN_INTERVAL,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self._feed = feed
        self._skills = skills
        self.calendar = calendar or BusinessCalendar()
        self._grace = default_grace
        self.min_interval = min_interval
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()

    def trigger(self, row: Schedule) -> Trigger:
        return schedule_trigger(row, calendar=self.calendar, min_interval=self.min_interval)

    def plan(self, row: Schedule, now: datetime, *, trigger: Trigger | None = None) -> FiringPlan:
        """What is due for ``row`` at ``now``: the one planning rule every caller uses
        (the leader at the instant and ahead of it, the job table, the next-runs echo).
        Raises :class:`TriggerError` for an unreadable trigger."""
        return due_firings(
            trigger or self.trigger(row),
            row.last_fire_at,
            now,
            grace=timedelta(seconds=row.grace_seconds),
            since=row.created_at,
        )

    async def create(
        self,
        *,
        team: str,
        owner: str,
        channel: str,
        skill: str,
        when: str,
        tz: str,
        text: str = "",
        grace: timedelta | None = None,
        standup: StandupOptions | None = None,
    ) -> Created:
        """Validate and save a schedule; raise :class:`InvalidSchedule` and save nothing."""
        skill = skill.strip().lower()
        if skill == STANDUP:
            if standup is None or not standup.usergroup:
                raise InvalidSchedule("a stand-up needs a user group to ask")
            if not timedelta(0) < standup.window <= _MAX_WINDOW:
                raise InvalidSchedule("a stand-up's answer window must be at most 12 hours")
        elif skill not in self._skills():
            names = ", ".join(f"`{s}`" for s in sorted(self._skills()))
            raise InvalidSchedule(
                f"there is no skill named `{skill}`. Skills: {names}, or `standup`"
            )
        if not channel:
            raise InvalidSchedule("say which channel the results go to")
        now = self._clock()
        try:
            trigger = parse_trigger(
                when, tz=tz, now=now, calendar=self.calendar, min_interval=self.min_interval
            )
        except TriggerError as error:
            raise InvalidSchedule(str(error)) from None
        grace = self._grace if grace is None else grace
        row = await self.store.create(
            team_id=team,
            kind=STANDUP if skill == STANDUP else "skill",
            skill=skill,
            input_text=text.strip(),
            channel_id=channel,
            trigger=trigger.to_dict(),
            tz=tz,
            grace_seconds=int(grace.total_seconds()),
            options=standup.to_dict() if standup else None,
            owner=owner,
            enabled=True,
            created_at=now,
            updated_at=now,
            next_run_at=trigger.next_fire(now),
        )
        await self._announce(row.id)
        return Created(schedule=row, echo=describe_schedule(trigger, now=now))

    async def get(self, schedule_id: str) -> Schedule:
        row = await self.store.find(schedule_id)
        if row is None:
            raise ScheduleNotFound(schedule_id)
        return row

    def authorize(self, row: Schedule, *, by: str, admin: bool, action: str) -> None:
        """Raise :class:`NotAllowed` unless ``by`` owns ``row`` or acts as an admin.

        Every change of an existing schedule (pause, resume, run now, delete, edit) goes
        through here. ``admin`` is the caller's finding: operators at the CLI are admins;
        for a Slack user the bot asks whether they are in ``SWITCHBOARD_ADMIN_USERGROUP``.
        """
        if not admin and row.owner != by:
            raise NotAllowed(action)

    async def pause(self, schedule_id: str, *, by: str, admin: bool = True) -> Schedule:
        row = await self.get(schedule_id)
        self.authorize(row, by=by, admin=admin, action="pause")
        changed = await self.store.set_enabled(
            row.id, False, now=self._clock(), reason=f"paused by {_who(by)}"
        )
        assert changed is not None
        await self._announce(row.id)
        return changed

    async def resume(self, schedule_id: str, *, by: str, admin: bool = True) -> Schedule:
        row = await self.get(schedule_id)
        self.authorize(row, by=by, admin=admin, action="resume")
        now = self._clock()
        next_run = self.trigger(row).next_fire(now)
        changed = await self.store.set_enabled(row.id, True, now=now, next_run_at=next_run)
        if changed is None:
            raise ScheduleNotFound(schedule_id)
        await self._announce(row.id)
        return changed

    async def delete(self, schedule_id: str, *, by: str, admin: bool = True) -> Schedule:
        row = await self.get(schedule_id)
        self.authorize(row, by=by, admin=admin, action="delete")
        await self.store.delete(row.id)
        await self._announce(row.id)
        return row

    async def run_now(self, schedule_id: str, *, by: str, admin: bool = True) -> Schedule:
        """Ask the leader for an extra run now (it does not move the regular runs). The run
        acts as the schedule's owner, so only the owner (or an admin) may ask for one."""
        row = await self.get(schedule_id)
        self.authorize(row, by=by, admin=admin, action="run")
        await self.store.request_run(row.id, self._clock())
        await self._announce(row.id)
        return row

    async def for_channel(self, channel: str) -> list[Schedule]:
        return await self.store.list_schedules(channel=channel)

    async def for_owner(self, owner: str) -> list[Schedule]:
        return await self.store.list_schedules(owner=owner)

    def next_runs(self, row: Schedule, n: int = 3) -> list[datetime]:
        if not row.enabled:
            return []
        try:
            trigger = self.trigger(row)
        except TriggerError:
            return []
        now = self._clock()
        plan = self.plan(row, now, trigger=trigger)
        runs = trigger.next_n(now, n)
        return [plan.run, *runs][:n] if plan.run is not None else runs

    def summary(self, row: Schedule) -> str:
        """One line: ``digest every weekday at 09:00 (Asia/Dubai) → next Mon 2 Dec 09:00``."""
        now = self._clock()
        text = describe_row(row, now=now, calendar=self.calendar, min_interval=self.min_interval)
        upcoming = self.next_runs(row, 1)
        when = (
            f"next {format_run_time(upcoming[0], row.tz, now=now)}"
            if upcoming
            else ("paused" if not row.enabled else "no upcoming runs")
        )
        return f"{row.skill} {text} → {when}"

    async def _announce(self, schedule_id: str) -> None:
        if self._feed is not None:
            await self._feed.publish(CHANGED, schedule_id)
