"""Business days: which dates count as working days for ``every business day`` schedules.

A :class:`BusinessCalendar` is a weekend (a set of Python weekday numbers,
Monday = 0 … Sunday = 6) plus a list of holidays. It is an immutable value so that a
trigger can embed it and be serialised with it; when the configured calendar changes,
the scheduler re-binds triggers to the new value (``dataclasses.replace``).

Config strings are what an operator types: ``weekend="fri-sat"`` (a range, wrapping past
Sunday if needed: ``"sat-sun"``, ``"fri-sun"``), ``"fri,sat"``, ``"sun"`` or ``"none"``, and
holidays as ISO dates (``"2026-12-25"``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

__all__ = ["WEEKDAY_NAMES", "BusinessCalendar", "CalendarError", "parse_weekend"]

#: Python weekday numbers (``date.weekday()``) to short English names.
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

_DAY_WORDS: dict[str, int] = {}
for _number, _names in enumerate(
    (
        ("mon", "monday"),
        ("tue", "tues", "tuesday"),
        ("wed", "weds", "wednesday"),
        ("thu", "thur", "thurs", "thursday"),
        ("fri", "friday"),
        ("sat", "saturday"),
        ("sun", "sunday"),
    )
):
    for _name in _names:
        _DAY_WORDS[_name] = _number

_DEFAULT_WEEKEND = frozenset({5, 6})


class CalendarError(ValueError):
    """A business calendar could not be built from its configuration."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"business calendar: {problem}")


def _day_number(word: str) -> int:
    try:
        return _DAY_WORDS[word.strip().lower()]
    except KeyError:
        raise CalendarError(f"unknown weekday {word.strip()!r} (use mon, tue, … sun)") from None


def parse_weekend(spec: str | Iterable[int | str]) -> frozenset[int]:
    """Turn ``"fri-sat"``, ``"sat,sun"``, ``"none"`` or ``[4, 5]`` into weekday numbers."""
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in ("", "none"):
            return frozenset()
        days: set[int] = set()
        for part in re.split(r"\s*[,\s]\s*", text):
            if not part:
                continue
            if "-" in part:
                first, _, last = part.partition("-")
                start, end = _day_number(first), _day_number(last)
                # Ranges wrap past Sunday, so "sat-sun" and "fri-mon" read as people mean them.
                days.update((start + i) % 7 for i in range((end - start) % 7 + 1))
            else:
                days.add(_day_number(part))
        return frozenset(days)
    result: set[int] = set()
    for item in spec:
        if isinstance(item, str):
            result.add(_day_number(item))
        elif isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= 6:
            result.add(item)
        else:
            raise CalendarError(f"weekend day {item!r} is not 0 (Monday) … 6 (Sunday)")
    return frozenset(result)


def _parse_holiday(item: date | str) -> date:
    if isinstance(item, date):
        return item
    try:
        return date.fromisoformat(item.strip())
    except (ValueError, AttributeError):
        raise CalendarError(f"holiday {item!r} is not an ISO date like 2026-12-25") from None


@dataclass(frozen=True, kw_only=True)
class BusinessCalendar:
    """Weekend days and holidays; every other date is a business day."""

    weekend: frozenset[int] = field(default=_DEFAULT_WEEKEND)
    holidays: frozenset[date] = field(default=frozenset())

    def __post_init__(self) -> None:
        weekend = parse_weekend(self.weekend)
        if len(weekend) == 7:
            raise CalendarError("a weekend of all seven days leaves no business days")
        holidays = frozenset(_parse_holiday(d) for d in self.holidays)
        object.__setattr__(self, "weekend", weekend)
        object.__setattr__(self, "holidays", holidays)

    @classmethod
    def from_config(
        cls,
        *,
        weekend: str | Iterable[int | str] = "sat-sun",
        holidays: Iterable[date | str] = (),
    ) -> BusinessCalendar:
        """Build a calendar from operator config, e.g. ``weekend="fri-sat"``."""
        return cls(
            weekend=parse_weekend(weekend), holidays=frozenset(map(_parse_holiday, holidays))
        )

    def is_business_day(self, day: date) -> bool:
        """True unless ``day`` falls on the weekend or is a holiday."""
        return day.weekday() not in self.weekend and day not in self.holidays

    def next_business_day(self, day: date) -> date:
        """The first business day strictly after ``day``."""
        candidate = day + timedelta(days=1)
        while not self.is_business_day(candidate):
            candidate += timedelta(days=1)
        return candidate

    @property
    def is_default(self) -> bool:
        return self.weekend == _DEFAULT_WEEKEND and not self.holidays

    def describe(self) -> str:
        """Short text such as ``weekend Fri-Sat, 2 holidays``."""
        weekend = "weekend " + _describe_days(self.weekend) if self.weekend else "no weekend"
        if not self.holidays:
            return weekend
        count = len(self.holidays)
        return f"{weekend}, {count} holiday{'s' if count != 1 else ''}"

    def to_dict(self) -> dict[str, list[int] | list[str]]:
        return {
            "weekend": sorted(self.weekend),
            "holidays": sorted(d.isoformat() for d in self.holidays),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> BusinessCalendar:
        weekend = data.get("weekend", sorted(_DEFAULT_WEEKEND))
        holidays = data.get("holidays", [])
        if not isinstance(weekend, list | tuple) or not isinstance(holidays, list | tuple):
            raise CalendarError("stored calendar needs lists for 'weekend' and 'holidays'")
        return cls.from_config(weekend=weekend, holidays=holidays)


def _describe_days(days: frozenset[int]) -> str:
    """``{4, 5}`` → ``Fri-Sat``; ``{6}`` → ``Sun``; ``{0, 2}`` → ``Mon, Wed``."""
    ordered = sorted(days)
    if len(ordered) > 1:
        # Find a rotation in which the days are consecutive (a weekend may wrap past Sunday).
        for start in ordered:
            run = [(start + i) % 7 for i in range(len(ordered))]
            if set(run) == days:
                return f"{WEEKDAY_NAMES[run[0]]}-{WEEKDAY_NAMES[run[-1]]}"
    return ", ".join(WEEKDAY_NAMES[d] for d in ordered)
