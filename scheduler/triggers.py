"""Triggers: what people type, turned into the instants a schedule fires at.

Pure time logic, no I/O: every function that needs the current time takes ``now``.

Kinds of trigger (all frozen, comparable, and stored as a small JSON-able dict)::

    Trigger
     ├── CronTrigger          wall-clock crontab  (also "every weekday at 9:00", "on the 1st …")
     ├── BusinessDayTrigger   wall-clock daily time on a BusinessCalendar's business days
     ├── IntervalTrigger      elapsed time from an anchor ("every 2 hours")
     └── OnceTrigger          one instant ("tomorrow at 15:00", "in 20 minutes")

Wall-clock semantics (see ``docs/scheduling.md``): a schedule at 09:00 in a zone fires
when clocks there show 09:00, whatever the UTC offset. A wall time that does not exist
(skipped by a spring-forward change) fires once at the first instant after the gap; a wall
time that happens twice (fall-back) fires once, at its first occurrence.

Misfires: :func:`due_firings` turns "the scheduler was down" into at most one run (the
latest due firing, if still within the grace window) plus a list of missed firings.
"""

from __future__ import annotations

import bisect
import itertools
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo

from scheduler._phrases import (
    After,
    At,
    BusinessDaily,
    CronSpec,
    Every,
    Monthly,
    OnDate,
    OnDay,
    OnWeekday,
    PhraseError,
    Weekly,
    format_clock,
    parse_crontab,
    parse_text,
)
from scheduler.calendar import BusinessCalendar, CalendarError

__all__ = [
    "DEFAULT_GRACE",
    "EXAMPLES",
    "MAX_INTERVAL",
    "MAX_ONE_OFF_AHEAD",
    "MIN_INTERVAL",
    "BusinessDayTrigger",
    "CronTrigger",
    "FiringPlan",
    "IntervalTrigger",
    "OnceTrigger",
    "Trigger",
    "TriggerError",
    "TriggerKind",
    "describe_schedule",
    "due_firings",
    "format_run_time",
    "parse_trigger",
    "plan_firing",
    "wall_to_utc",
]

TriggerKind = Literal["cron", "interval", "once", "business"]

#: Shown with every "could not understand" error, in this order.
EXAMPLES = (
    "every weekday at 9:00",
    "every monday at 10am",
    "every 2 hours",
    "0 9 * * 1-5",
    "tomorrow at 15:00",
    "in 20 minutes",
)
MIN_INTERVAL = timedelta(seconds=30)
MAX_INTERVAL = timedelta(days=31)
MAX_ONE_OFF_AHEAD = timedelta(days=5 * 366)
DEFAULT_GRACE = timedelta(minutes=10)
#: Longest run of days searched without finding a firing before giving up (29 February
#: in a crontab that also pins the weekday can take up to 28 years).
_SEARCH_DAYS = 366 * 30
_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ALL_DAYS_OF_MONTH = frozenset(range(1, 32))
_ALL_MONTHS = frozenset(range(1, 13))
_ALL_WEEKDAYS = frozenset(range(7))


class TriggerError(ValueError):
    """Text, zone or stored data that does not make a valid trigger.

    ``problem`` is the short reason; the message adds examples of valid input so it can be
    shown to the person who typed the schedule as is.
    """

    def __init__(self, problem: str, *, examples: bool = True) -> None:
        self.problem = problem
        message = f"{problem}. Try: {' · '.join(EXAMPLES)}" if examples else problem
        super().__init__(message)


# -- time helpers ----------------------------------------------------------------------------


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (KeyError, ValueError, OSError, TypeError):
        raise TriggerError(
            f"unknown time zone {tz!r}; use an IANA name such as Europe/Lisbon, "
            "America/New_York or UTC",
            examples=False,
        ) from None


def _aware_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def wall_to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant at which clocks in ``zone`` show the naive wall time ``local``.

    A wall time skipped by a spring-forward change maps to the first instant after the gap
    (the transition itself); a wall time that happens twice maps to its first occurrence.
    """
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
        return first  # exists; fold=0 is the earlier of two occurrences
    # In a gap, fold=0 reads the time with the offset from before the change (a later UTC
    # instant) and fold=1 with the offset after it (an earlier one); the change is between.
    low = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = first
    before = low.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) // 2
        if middle.astimezone(zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


def _wall_clock_fires(
    after: datetime,
    zone: ZoneInfo,
    day_ok: Callable[[date], bool],
    times: Sequence[time],
) -> Iterator[datetime]:
    """Instants strictly after ``after`` at which one of ``times`` is due on a ``day_ok`` day.

    Wall times resolve to instants in the same order as on the clock, so each day's list can
    be bisected; equal instants (several wall times inside one gap) are yielded once.
    """
    last = after
    day = after.astimezone(zone).date() - timedelta(days=1)
    idle_days = 0
    while idle_days < _SEARCH_DAYS:
        if day_ok(day):

            def instant(clock: time, day: date = day) -> datetime:
                return wall_to_utc(datetime.combine(day, clock), zone)

            start = bisect.bisect_right(times, last, key=instant)
            for clock in times[start:]:
                at = instant(clock)
                if at > last:
                    last = at
                    idle_days = 0
                    yield at
        day += timedelta(days=1)
        idle_days += 1


def format_run_time(instant: datetime, tz: str, *, now: datetime | None = None) -> str:
    """``Mon 2 Dec 09:00 WET``: a run time as the owner's clock shows it.

    Seconds appear only when not zero; the year only when it differs from ``now``'s.
    """
    local = instant.astimezone(_zone(tz))
    clock = f"{local:%H:%M}" if local.second == 0 else f"{local:%H:%M:%S}"
    year = ""
    if now is None or now.astimezone(local.tzinfo).year != local.year:
        year = f" {local.year}"
    return f"{local:%a} {local.day} {local:%b}{year} {clock} {local.tzname()}"


def _ordinal(number: int) -> str:
    suffix = (
        "th" if 11 <= number % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    )
    return f"{number}{suffix}"


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


# -- triggers --------------------------------------------------------------------------------


class Trigger(ABC):
    """When a schedule fires. Subclasses are frozen dataclasses."""

    kind: ClassVar[TriggerKind]
    tz: str

    @property
    @abstractmethod
    def expression(self) -> str:
        """The canonical text: a crontab, ``every 2 hours``, or an ISO instant."""

    @abstractmethod
    def summary(self) -> str:
        """What the trigger does, without the zone (``every weekday at 09:00``)."""

    @abstractmethod
    def iter_fires(self, after: datetime) -> Iterator[datetime]:
        """Firing instants (aware, UTC) strictly after ``after``, in order."""

    def description(self) -> str:
        """Human text such as ``every weekday at 09:00 (Europe/Lisbon)``."""
        return f"{self.summary()} ({self.tz})"

    def next_fire(self, after: datetime) -> datetime | None:
        """The first firing strictly after ``after`` (aware UTC), or None if there is none."""
        return next(self.iter_fires(after), None)

    def next_n(self, after: datetime, n: int = 3) -> list[datetime]:
        """Up to ``n`` firings strictly after ``after``."""
        return list(itertools.islice(self.iter_fires(after), n))

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-able form for storage; :meth:`from_dict` reads it back."""
        return {"kind": self.kind, "expr": self.expression, "tz": self.tz, **self._extra()}

    def _extra(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def from_dict(data: Mapping[str, Any], *, min_interval: timedelta = MIN_INTERVAL) -> Trigger:
        """Rebuild a trigger stored with :meth:`to_dict`; raise TriggerError if corrupt.

        ``min_interval`` lowers the shortest accepted interval (tests only).
        """
        try:
            return _from_dict(data, min_interval=min_interval)
        except TriggerError as error:
            raise TriggerError(
                f"stored trigger is invalid: {error.problem}", examples=False
            ) from None
        except (CalendarError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise TriggerError(f"stored trigger is invalid: {error}", examples=False) from None


@dataclass(frozen=True, kw_only=True)
class CronTrigger(Trigger):
    """A 5-field crontab evaluated on the wall clock of ``tz``."""

    kind: ClassVar[TriggerKind] = "cron"
    cron: str
    tz: str
    _spec: CronSpec = field(init=False, repr=False, compare=False)
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _times: tuple[time, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", _zone(self.tz))
        try:
            spec = parse_crontab(self.cron)
        except PhraseError as error:
            raise TriggerError(error.problem) from None
        object.__setattr__(self, "cron", spec.expression)
        object.__setattr__(self, "_spec", spec)
        times = tuple(time(h, m) for h in spec.hours for m in spec.minutes)
        object.__setattr__(self, "_times", times)

    @property
    def expression(self) -> str:
        return self.cron

    def summary(self) -> str:
        spec = self._spec
        if spec.months != _ALL_MONTHS or len(spec.minutes) != 1:
            return f"crontab {self.cron}"
        minute = spec.minutes[0]
        every_day = spec.days == _ALL_DAYS_OF_MONTH and spec.weekdays == _ALL_WEEKDAYS
        if len(spec.hours) == 24 and every_day:
            return f"every hour at :{minute:02d}"
        if len(spec.hours) != 1:
            return f"crontab {self.cron}"
        clock = f"{spec.hours[0]:02d}:{minute:02d}"
        if every_day:
            return f"every day at {clock}"
        if spec.days == _ALL_DAYS_OF_MONTH:
            if spec.weekdays == frozenset(range(5)):
                return f"every weekday at {clock}"
            if spec.weekdays == frozenset({5, 6}):
                return f"every weekend day at {clock}"
            names = [_DAY_NAMES[d] for d in sorted(spec.weekdays)]
            return f"every {_join(names)} at {clock}"
        if spec.weekdays == _ALL_WEEKDAYS and len(spec.days) == 1:
            day = next(iter(spec.days))
            text = f"on the {_ordinal(day)} of every month at {clock}"
            if day > 28:
                text += f", skipping months without a {_ordinal(day)}"
            return text
        return f"crontab {self.cron}"

    def iter_fires(self, after: datetime) -> Iterator[datetime]:
        after = _aware_utc(after, "after")
        return _wall_clock_fires(after, self._zone, self._spec.matches_day, self._times)


@dataclass(frozen=True, kw_only=True)
class BusinessDayTrigger(Trigger):
    """A daily wall-clock time on the business days of ``calendar``."""

    kind: ClassVar[TriggerKind] = "business"
    at: time
    tz: str
    calendar: BusinessCalendar = field(default_factory=BusinessCalendar)
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", _zone(self.tz))
        if self.at.tzinfo is not None or self.at.second or self.at.microsecond:
            raise TriggerError(f"business-day time {self.at} must be a plain HH:MM")

    @property
    def expression(self) -> str:
        return f"every business day at {format_clock(self.at)}"

    def summary(self) -> str:
        return self.expression

    def description(self) -> str:
        if self.calendar.is_default:
            return super().description()
        return f"{self.summary()} ({self.tz}; {self.calendar.describe()})"

    def iter_fires(self, after: datetime) -> Iterator[datetime]:
        after = _aware_utc(after, "after")
        return _wall_clock_fires(after, self._zone, self.calendar.is_business_day, (self.at,))

    def _extra(self) -> dict[str, Any]:
        return self.calendar.to_dict()


def _interval_phrase(seconds: int) -> str:
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            count = seconds // size
            return f"every {unit}" if count == 1 else f"every {count} {unit}s"
    raise AssertionError("unreachable")  # pragma: no cover - size 1 always divides


@dataclass(frozen=True, kw_only=True)
class IntervalTrigger(Trigger):
    """Every ``seconds`` of elapsed time, counted from ``anchor`` (usually creation time).

    Elapsed time ignores clock changes: ``every 2 hours`` stays two real hours apart across
    DST. The first firing is one interval after the anchor.
    """

    kind: ClassVar[TriggerKind] = "interval"
    seconds: int
    anchor: datetime
    tz: str
    #: The shortest interval accepted; lowered only by tests that need fast firings.
    min_interval: timedelta = field(default=MIN_INTERVAL, repr=False, compare=False)

    def __post_init__(self) -> None:
        _zone(self.tz)
        low = self.min_interval.total_seconds()
        if not low <= self.seconds <= MAX_INTERVAL.total_seconds():
            raise TriggerError(
                f"an interval must be between {int(low)} seconds "
                f"and {MAX_INTERVAL.days} days, got {self.seconds} seconds"
            )
        object.__setattr__(self, "anchor", _aware_utc(self.anchor, "anchor"))

    @property
    def expression(self) -> str:
        return _interval_phrase(self.seconds)

    def summary(self) -> str:
        return self.expression

    def iter_fires(self, after: datetime) -> Iterator[datetime]:
        after = _aware_utc(after, "after")
        step = timedelta(seconds=self.seconds)
        count = 1 if after < self.anchor + step else (after - self.anchor) // step + 1
        at = self.anchor + count * step
        while True:
            yield at
            at += step

    def _extra(self) -> dict[str, Any]:
        return {"anchor": self.anchor.isoformat().replace("+00:00", "Z")}


@dataclass(frozen=True, kw_only=True)
class OnceTrigger(Trigger):
    """A single instant."""

    kind: ClassVar[TriggerKind] = "once"
    at: datetime
    tz: str

    def __post_init__(self) -> None:
        _zone(self.tz)
        object.__setattr__(self, "at", _aware_utc(self.at, "at"))

    @property
    def expression(self) -> str:
        return self.at.isoformat().replace("+00:00", "Z")

    def summary(self) -> str:
        return f"once on {format_run_time(self.at, self.tz)}"

    def iter_fires(self, after: datetime) -> Iterator[datetime]:
        if self.at > _aware_utc(after, "after"):
            yield self.at


def _from_dict(data: Mapping[str, Any], *, min_interval: timedelta) -> Trigger:
    kind, expr, tz = data["kind"], data["expr"], data["tz"]
    if not isinstance(expr, str) or not isinstance(tz, str):
        raise TypeError("'expr' and 'tz' must be strings")
    if kind == "cron":
        return CronTrigger(cron=expr, tz=tz)
    if kind == "once":
        return OnceTrigger(at=datetime.fromisoformat(expr), tz=tz)
    parsed = parse_text(expr)
    if kind == "interval" and isinstance(parsed, Every):
        anchor = datetime.fromisoformat(data["anchor"])
        return IntervalTrigger(
            seconds=parsed.seconds, anchor=anchor, tz=tz, min_interval=min_interval
        )
    if kind == "business" and isinstance(parsed, BusinessDaily):
        calendar = BusinessCalendar.from_dict(data)
        return BusinessDayTrigger(at=parsed.at, tz=tz, calendar=calendar)
    raise ValueError(f"kind {kind!r} with expression {expr!r}")


# -- parsing ---------------------------------------------------------------------------------


def _cron_weekdays(weekdays: frozenset[int]) -> str:
    """Python weekdays → crontab day-of-week field, with runs as ranges: {0..4} → ``1-5``."""
    if weekdays == _ALL_WEEKDAYS:
        return "*"
    numbers = sorted((d + 1) % 7 for d in weekdays)
    parts: list[str] = []
    for _, group in itertools.groupby(enumerate(numbers), key=lambda pair: pair[1] - pair[0]):
        run = [number for _, number in group]
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


def _one_off(at: datetime, *, now: datetime, tz: str, text: str) -> OnceTrigger:
    if at <= now:
        when = format_run_time(at, tz, now=now)
        raise TriggerError(f"{text.strip()!r} is in the past (it was {when})")
    if at - now > MAX_ONE_OFF_AHEAD:
        raise TriggerError(f"{text.strip()!r} is more than {MAX_ONE_OFF_AHEAD.days} days ahead")
    return OnceTrigger(at=at, tz=tz)


def parse_trigger(
    text: str,
    *,
    tz: str,
    now: datetime,
    calendar: BusinessCalendar | None = None,
    min_interval: timedelta = MIN_INTERVAL,
) -> Trigger:
    """Turn a phrase or crontab typed by a person into a trigger.

    ``tz`` is the schedule's zone (the creator's Slack zone unless overridden); ``now`` is
    an aware datetime that relative phrases resolve against and that anchors intervals.
    ``calendar`` serves ``every business day`` (default: Sat-Sun weekend, no holidays).
    ``min_interval`` lowers the shortest accepted interval (tests only).
    Raises TriggerError, whose message includes examples of valid input.
    """
    zone = _zone(tz)
    now = _aware_utc(now, "now")
    try:
        parsed = parse_text(text)
    except PhraseError as error:
        raise TriggerError(error.problem) from None
    today = now.astimezone(zone).date()

    def local(day: date, clock: time) -> datetime:
        return wall_to_utc(datetime.combine(day, clock), zone)

    match parsed:
        case CronSpec():
            trigger: Trigger = CronTrigger(cron=parsed.expression, tz=tz)
        case Every(seconds=seconds):
            trigger = IntervalTrigger(
                seconds=seconds,
                anchor=now.replace(microsecond=0),
                tz=tz,
                min_interval=min_interval,
            )
        case Weekly(weekdays=weekdays, at=clock):
            cron = f"{clock.minute} {clock.hour} * * {_cron_weekdays(weekdays)}"
            trigger = CronTrigger(cron=cron, tz=tz)
        case Monthly(day=day, at=clock):
            trigger = CronTrigger(cron=f"{clock.minute} {clock.hour} {day} * *", tz=tz)
        case BusinessDaily(at=clock):
            trigger = BusinessDayTrigger(at=clock, tz=tz, calendar=calendar or BusinessCalendar())
        case After(seconds=seconds):
            if seconds > MAX_ONE_OFF_AHEAD.total_seconds():
                raise TriggerError(
                    f"{text.strip()!r} is more than {MAX_ONE_OFF_AHEAD.days} days ahead"
                )
            at = now.replace(microsecond=0) + timedelta(seconds=seconds)
            trigger = _one_off(at, now=now, tz=tz, text=text)
        case At(at=clock):
            at = local(today, clock)
            trigger = _one_off(
                at if at > now else local(today + timedelta(days=1), clock),
                now=now,
                tz=tz,
                text=text,
            )
        case OnDay(offset=offset, at=clock):
            trigger = _one_off(
                local(today + timedelta(days=offset), clock), now=now, tz=tz, text=text
            )
        case OnWeekday(weekday=weekday, at=clock, skip_today=skip_today):
            ahead = (weekday - today.weekday()) % 7
            at = local(today + timedelta(days=ahead), clock)
            if (skip_today and ahead == 0) or at <= now:
                at = local(today + timedelta(days=ahead + 7), clock)
            trigger = _one_off(at, now=now, tz=tz, text=text)
        case OnDate(day=day, at=clock):
            trigger = _one_off(local(day, clock), now=now, tz=tz, text=text)
    if trigger.next_fire(now) is None:
        raise TriggerError(f"{text.strip()!r} never fires")
    return trigger


def describe_schedule(trigger: Trigger, *, now: datetime, n: int = 3) -> str:
    """The echo shown when a schedule is saved: what it does and its next ``n`` run times.

    ``every weekday at 09:00 (Europe/Lisbon)
    Next runs: Mon 2 Dec 09:00 WET · Tue 3 Dec 09:00 WET · Wed 4 Dec 09:00 WET``
    """
    runs = trigger.next_n(now, n)
    if not runs:
        return f"{trigger.description()}\nNo upcoming runs."
    label = "Runs" if isinstance(trigger, OnceTrigger) else "Next runs"
    times = " · ".join(format_run_time(run, trigger.tz, now=now) for run in runs)
    return f"{trigger.description()}\n{label}: {times}"


# -- misfires --------------------------------------------------------------------------------


def plan_firing(
    scheduled: datetime, now: datetime, *, grace: timedelta
) -> Literal["run", "missed"]:
    """Run a due firing if it is at most ``grace`` late; otherwise it is missed."""
    scheduled, now = _aware_utc(scheduled, "scheduled"), _aware_utc(now, "now")
    if grace < timedelta(0):
        raise ValueError(f"grace must not be negative, got {grace}")
    if scheduled > now:
        raise ValueError(f"firing at {scheduled.isoformat()} is not due at {now.isoformat()}")
    return "run" if now - scheduled <= grace else "missed"


@dataclass(frozen=True)
class FiringPlan:
    """What to do after waking up: at most one run, the missed firings, the next firing.

    ``missed`` holds the most recent missed firings, oldest first, capped;
    ``missed_dropped`` counts older missed firings left out of the list.
    """

    run: datetime | None
    missed: tuple[datetime, ...]
    next: datetime | None
    missed_dropped: int = 0

    @property
    def missed_total(self) -> int:
        return len(self.missed) + self.missed_dropped


def due_firings(
    trigger: Trigger,
    last_fire: datetime | None,
    now: datetime,
    *,
    grace: timedelta = DEFAULT_GRACE,
    since: datetime | None = None,
    max_missed: int = 100,
) -> FiringPlan:
    """Plan the firings due between the last one and ``now`` — never a burst.

    Due firings are those after ``last_fire`` and at or before ``now``. The latest of them
    runs if it is within ``grace`` (the others coalesce into it); every other due firing is
    reported missed. With no ``last_fire`` the count starts at ``since`` (the schedule's
    creation time) if given, else at the anchor of an interval trigger, before the instant
    of a one-off, and ``grace`` before ``now`` for wall-clock triggers.
    """
    now = _aware_utc(now, "now")
    if grace < timedelta(0):
        raise ValueError(f"grace must not be negative, got {grace}")
    if max_missed < 0:
        raise ValueError(f"max_missed must not be negative, got {max_missed}")
    if last_fire is not None:
        start = _aware_utc(last_fire, "last_fire")
    elif since is not None:
        start = _aware_utc(since, "since")
    elif isinstance(trigger, IntervalTrigger):
        start = trigger.anchor
    elif isinstance(trigger, OnceTrigger):
        start = trigger.at - timedelta(microseconds=1)
    else:
        start = now - grace

    recent: deque[datetime] = deque(maxlen=max_missed + 1)
    due = 0
    for at in trigger.iter_fires(start):
        if at > now:
            break
        recent.append(at)
        due += 1
    run: datetime | None = None
    if recent and plan_firing(recent[-1], now, grace=grace) == "run":
        run = recent.pop()
        due -= 1
    missed = tuple(recent)[-max_missed:] if max_missed else ()
    return FiringPlan(
        run=run, missed=missed, next=trigger.next_fire(now), missed_dropped=due - len(missed)
    )
