"""Syntax only: turn what people type into a neutral parsed form.

Nothing here knows about time zones or the current time; ``scheduler.triggers`` resolves
the parsed forms against ``now`` and a zone. Two grammars live here:

* 5-field crontab (``0 9 * * 1-5``) and the ``@daily``-style aliases, validated field by
  field so that the error names the field and the bad value;
* English phrases (``every weekday at 9:00``, ``in 20 minutes`` …), after normalising case,
  spacing, commas and ``a.m.``/``p.m.``.

Every failure raises :class:`PhraseError` with a short problem statement; the caller adds
examples of valid input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, time

__all__ = [
    "After",
    "At",
    "BusinessDaily",
    "CronSpec",
    "Every",
    "Monthly",
    "OnDate",
    "OnDay",
    "OnWeekday",
    "Parsed",
    "PhraseError",
    "Weekly",
    "format_clock",
    "parse_crontab",
    "parse_text",
]


class PhraseError(ValueError):
    """The text is not a schedule this module understands; ``problem`` says why."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


# -- crontab ---------------------------------------------------------------------------------

_MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
# Crontab numbers days of the week from Sunday = 0 (7 is Sunday too).
_CRON_DAY_NAMES = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Days in each month, counting 29 February because it does exist every few years.
_MAX_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int  # highest value allowed in the text (7 for day-of-week)
    star_high: int  # highest value ``*`` stands for (6 for day-of-week)
    names: dict[str, int]


_FIELDS = (
    _Field("minute", 0, 59, 59, {}),
    _Field("hour", 0, 23, 23, {}),
    _Field("day-of-month", 1, 31, 31, {}),
    _Field("month", 1, 12, 12, _MONTH_NAMES),
    _Field("day-of-week", 0, 7, 6, _CRON_DAY_NAMES),
)


@dataclass(frozen=True)
class CronSpec:
    """A validated crontab: the sets of values each field allows.

    ``weekdays`` uses Python numbering (Monday = 0). When both day fields are restricted
    (neither starts with ``*``) a day matches if *either* matches, as in Vixie cron.
    """

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_restricted: bool
    weekday_restricted: bool

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        day_ok = day.day in self.days
        weekday_ok = day.weekday() in self.weekdays
        if self.day_restricted and self.weekday_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok


def _cron_value(text: str, spec: _Field, whole: str) -> int:
    if text.isdigit():
        value = int(text)
    elif text in spec.names:
        value = spec.names[text]
    elif not text:
        raise PhraseError(f"{spec.name} field {whole!r} has an empty value")
    else:
        raise PhraseError(f"{spec.name} field {whole!r}: {text!r} is not a number or name")
    if not spec.low <= value <= spec.high:
        raise PhraseError(
            f"{spec.name} value {value} is out of range {spec.low}-{spec.high} in {whole!r}"
        )
    return value


def _cron_field(text: str, spec: _Field) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise PhraseError(f"{spec.name} field {text!r} has an empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit():
                raise PhraseError(
                    f"step {step_text!r} in {spec.name} field {text!r} is not a number"
                )
            step = int(step_text)
            if step == 0:
                raise PhraseError(f"step 0 in {spec.name} field {text!r} must be 1 or more")
        if base == "*":
            low, high = spec.low, spec.star_high
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _cron_value(first, spec, text), _cron_value(last, spec, text)
            if spec.name == "day-of-week" and high == 0 < low:
                high = 7  # "fri-sun": Sunday closes the range as 7
            if low > high:
                raise PhraseError(f"{spec.name} range {base!r} runs backwards")
        else:
            low = _cron_value(base, spec, text)
            high = spec.star_high if slash else low
        if slash and step > max(high - low, 0):
            raise PhraseError(
                f"step {step} in {spec.name} field {text!r} is larger than its range {low}-{high}"
            )
        values.update(range(low, high + 1, step))
    return values


def parse_crontab(text: str) -> CronSpec:
    """Validate a 5-field crontab or an alias and return its value sets."""
    expression = " ".join(text.lower().split())
    if expression.startswith("@"):
        if expression not in _ALIASES:
            raise PhraseError(
                f"unknown crontab alias {expression!r} (use one of {', '.join(sorted(_ALIASES))})"
            )
        expression = _ALIASES[expression]
    parts = expression.split(" ")
    if len(parts) != 5:
        extra = "; seconds and year fields are not supported" if len(parts) > 5 else ""
        raise PhraseError(
            "a crontab needs 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(parts)}{extra}"
        )
    minutes, hours, days, months, cron_weekdays = (
        _cron_field(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)
    )
    spec = CronSpec(
        expression=expression,
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset((d + 6) % 7 for d in cron_weekdays),
        day_restricted=not parts[2].startswith("*"),
        weekday_restricted=not parts[4].startswith("*"),
    )
    uses_only_day_of_month = not (spec.day_restricted and spec.weekday_restricted)
    if uses_only_day_of_month and not any(
        day <= _MAX_DAYS[month] for month in spec.months for day in spec.days
    ):
        raise PhraseError(f"crontab {expression!r} never fires: no month has that day")
    return spec


def looks_like_crontab(text: str) -> bool:
    """True for text that is meant as a crontab (and should get crontab errors)."""
    tokens = text.split()
    if not tokens:
        return False
    if tokens[0].startswith("@"):
        return True
    if not all(re.fullmatch(r"[\w*/,\-?#]+", token) for token in tokens):
        return False
    if "*" in text:
        return bool(re.fullmatch(r"[\d*][\w*/,\-?#]*", tokens[0]))
    return len(tokens) >= 5 and bool(re.fullmatch(r"\d[\d/,\-]*", tokens[0]))


# -- phrases: parsed forms ---------------------------------------------------------------------


@dataclass(frozen=True)
class Every:
    """``every 2 hours``: elapsed-time interval."""

    seconds: int


@dataclass(frozen=True)
class After:
    """``in 20 minutes``: once, that long after now."""

    seconds: int


@dataclass(frozen=True)
class Weekly:
    """``every day/weekday/monday/mon, wed and fri at 10:00`` (Python weekday numbers)."""

    weekdays: frozenset[int]
    at: time


@dataclass(frozen=True)
class Monthly:
    """``on the 1st of every month at 08:00``."""

    day: int
    at: time


@dataclass(frozen=True)
class BusinessDaily:
    """``every business day at 9:00``: weekdays minus the calendar's weekend and holidays."""

    at: time


@dataclass(frozen=True)
class At:
    """``at 15:00``: once, at the next time the clock shows that."""

    at: time


@dataclass(frozen=True)
class OnDay:
    """``today at 15:00`` (offset 0) or ``tomorrow at 15:00`` (offset 1)."""

    offset: int
    at: time


@dataclass(frozen=True)
class OnWeekday:
    """``monday at 10:00`` (today if still ahead) or ``next monday at 10:00`` (never today)."""

    weekday: int
    at: time
    skip_today: bool


@dataclass(frozen=True)
class OnDate:
    """``on 2026-03-05 at 15:00``."""

    day: date
    at: time


Parsed = (
    Every | After | Weekly | Monthly | BusinessDaily | At | OnDay | OnWeekday | OnDate | CronSpec
)


# -- phrases: vocabulary ---------------------------------------------------------------------

_UNIT_SECONDS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), 604800),
}
_NUMBER_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "forty-five": 45,
    "ninety": 90,
}
_UNITS_RE = "|".join(sorted(_UNIT_SECONDS, key=len, reverse=True))
_NUMBER_RE = r"\d{1,9}|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True))
_DURATION_PART = re.compile(rf"(?:({_NUMBER_RE})\s?)?({_UNITS_RE})(?![a-z])")
_DURATION_GLUE = re.compile(r",? and |, | |")

_DAY_WORDS: dict[str, tuple[int, bool]] = {}  # word -> (python weekday, plural)
for _number, _words in enumerate(
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
    for _word in _words:
        _DAY_WORDS[_word] = (_number, False)
    _DAY_WORDS[_words[-1] + "s"] = (_number, True)

_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ALL_DAYS = frozenset(range(7))
_WORK_WEEK = frozenset(range(5))
_WEEKEND = frozenset({5, 6})
_GROUPS: dict[str, frozenset[int]] = {
    "day": _ALL_DAYS,
    "days": _ALL_DAYS,
    "weekday": _WORK_WEEK,
    "weekdays": _WORK_WEEK,
    "week day": _WORK_WEEK,
    "week days": _WORK_WEEK,
    "weekend day": _WEEKEND,
    "weekend days": _WEEKEND,
    "weekend": _WEEKEND,
    "weekends": _WEEKEND,
}
_BUSINESS = re.compile(r"(?:business|working|work) ?days?|workdays?")
_ORDINAL = r"(\d{1,2})(?:st|nd|rd|th)?"
_MONTHLY = (
    re.compile(rf"(?:on )?(?:the )?{_ORDINAL} (?:day )?of (?:every|each|the) month"),
    re.compile(rf"(?:every|each) month on (?:the )?{_ORDINAL}"),
    re.compile(rf"monthly on (?:the )?{_ORDINAL}"),
)
_TIME = r"noon|midday|midnight|\d{1,2}(?:[:.h]\d{2})?(?: ?[ap]m)?"
_TIME_PARTS = re.compile(r"(\d{1,2})(?:[:.h](\d{2}))?(?: ?([ap]m))?")


# -- phrases: helpers ------------------------------------------------------------------------


def normalize(text: str) -> str:
    """Lower-case, one space between words, ``a.m.`` → ``am``, tidy commas and ampersands."""
    result = text.strip().lower()
    result = re.sub(r"\b([ap])\.m\.?", r"\1m", result)
    result = result.rstrip(".!?; ")
    result = re.sub(r"\s*,\s*", ", ", result)
    result = re.sub(r"\s*&\s*", " and ", result)
    result = re.sub(r"\s+", " ", result)
    return result.replace("half an hour", "30 minutes").strip()


def parse_clock(text: str) -> time:
    """``9``, ``9am``, ``9:00``, ``09:00``, ``9.30pm``, ``17h30``, ``noon``, ``midnight``."""
    if text in ("noon", "midday"):
        return time(12, 0)
    if text == "midnight":
        return time(0, 0)
    match = _TIME_PARTS.fullmatch(text)
    if match is None:
        raise PhraseError(f"{text!r} is not a time of day")
    hour, minute = int(match[1]), int(match[2] or 0)
    suffix = match[3]
    if suffix:
        if not 1 <= hour <= 12:
            raise PhraseError(f"{text!r} is not a time of day (with am/pm the hour is 1-12)")
        hour = hour % 12 + (12 if suffix == "pm" else 0)
    elif hour > 23:
        raise PhraseError(f"{text!r} is not a time of day (hours run 0-23)")
    if minute > 59:
        raise PhraseError(f"{text!r} is not a time of day (minutes run 0-59)")
    return time(hour, minute)


def format_clock(at: time) -> str:
    return f"{at.hour:02d}:{at.minute:02d}"


def parse_duration(text: str) -> tuple[int, bool]:
    """``2 hours``, ``1h30m``, ``an hour and 15 minutes`` → (seconds, mentions days/weeks)."""
    position, seconds, calendar_units, parts = 0, 0, False, 0
    while position < len(text):
        if parts:
            glue = _DURATION_GLUE.match(text, position)
            position = glue.end() if glue else position
        match = _DURATION_PART.match(text, position)
        if match is None or match.end() == position:
            raise PhraseError(f"{text!r} is not a length of time")
        number_text, unit = match[1], match[2]
        if number_text is None:
            number = 1
        elif number_text.isdigit():
            number = int(number_text)
        else:
            number = _NUMBER_WORDS[number_text]
        seconds += number * _UNIT_SECONDS[unit]
        calendar_units = calendar_units or _UNIT_SECONDS[unit] >= 86400
        position = match.end()
        parts += 1
    if not parts:
        raise PhraseError("missing a length of time")
    return seconds, calendar_units


def _day_list(text: str) -> tuple[frozenset[int], bool] | None:
    """``mon, wed and fri`` → ({0, 2, 4}, all plural?) or None if these are not day names."""
    words = [w for w in re.split(r", and |, | and | or |/", text) if w]
    if not words or any(w not in _DAY_WORDS for w in words):
        return None
    return frozenset(_DAY_WORDS[w][0] for w in words), all(_DAY_WORDS[w][1] for w in words)


def _monthly_day(text: str) -> int | None:
    for pattern in _MONTHLY:
        match = pattern.fullmatch(text)
        if match:
            day = int(match[1])
            if not 1 <= day <= 31:
                raise PhraseError(f"day {day} of the month does not exist (use 1-31)")
            return day
    return None


def _recurring(days: str, at: time) -> Parsed | None:
    """The part after ``every``: ``day``, ``weekday``, ``business day``, ``mon and fri`` …"""
    if days.startswith("other "):
        raise PhraseError("'every other …' is not supported")
    if days in _GROUPS:
        return Weekly(_GROUPS[days], at)
    if _BUSINESS.fullmatch(days):
        return BusinessDaily(at)
    listed = _day_list(days)
    return Weekly(listed[0], at) if listed else None


def _dated(days: str, at: time) -> Parsed | None:
    """The part before ``at TIME`` when there is no ``every``."""
    days = days.removeprefix("on ")
    if not days:
        return At(at)
    if days == "today":
        return OnDay(0, at)
    if days == "tomorrow":
        return OnDay(1, at)
    if days == "daily":
        return Weekly(_ALL_DAYS, at)
    if days in _GROUPS and days.endswith("s"):
        return Weekly(_GROUPS[days], at)
    if _BUSINESS.fullmatch(days) and days.endswith("s"):
        return BusinessDaily(at)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", days):
        try:
            return OnDate(date.fromisoformat(days), at)
        except ValueError:
            raise PhraseError(f"{days!r} is not a date") from None
    skip_today = days.startswith("next ")
    listed = _day_list(days.removeprefix("next "))
    if listed is None:
        return None
    weekdays, plural = listed
    if plural and not skip_today:
        return Weekly(weekdays, at)
    if len(weekdays) == 1 and not plural:
        return OnWeekday(next(iter(weekdays)), at, skip_today)
    names = " and ".join(_FULL_DAY_NAMES[d] for d in sorted(weekdays))
    raise PhraseError(f"for a repeating schedule say 'every {names} at …'")


def _untimed(rest: str, text: str) -> Every:
    """``every …`` without a clock time: an interval, or a day-based phrase missing its time."""
    noon = time(12, 0)
    if _recurring(rest, noon) is not None or _monthly_day(f"every {rest}") is not None:
        raise PhraseError(f"say at what time, e.g. 'every {rest} at 9:00'")
    try:
        seconds, calendar_units = parse_duration(rest)
    except PhraseError:
        raise PhraseError(f"could not understand {text.strip()!r}") from None
    if calendar_units:
        raise PhraseError(
            "repeating every so many days or weeks is not supported; "
            "use 'every day at 9:00', 'every monday at 9:00' or a crontab"
        )
    return Every(seconds)


# -- phrases: entry point --------------------------------------------------------------------


def parse_text(text: str) -> Parsed:
    """Parse a crontab or a phrase; raise :class:`PhraseError` if it is neither."""
    collapsed = " ".join(text.lower().split())
    if not collapsed:
        raise PhraseError("the schedule is empty")
    if looks_like_crontab(collapsed):
        return parse_crontab(collapsed)
    phrase = normalize(text)
    # "at 9:00 every weekday" reads the same as "every weekday at 9:00".
    leading = re.fullmatch(rf"at ({_TIME}) (.+)", phrase)
    if leading:
        phrase = f"{leading[2]} at {leading[1]}"

    relative = re.fullmatch(r"in (.+)", phrase)
    if relative:
        return After(parse_duration(relative[1])[0])

    if re.search(rf"\b(?:{_TIME})(?:, | and )(?:{_TIME})$", phrase):
        raise PhraseError(
            "one time of day per schedule; for several use a crontab such as "
            "'0 9,17 * * 1-5' or one schedule per time"
        )
    timed = re.fullmatch(rf"(?:(.*?) )??(?:at |@ ?)?({_TIME})", phrase)
    recurring = re.fullmatch(r"(?:every|each) (.+)", phrase)
    if recurring and not timed:
        return _untimed(recurring[1], text)
    if not timed:
        raise PhraseError(f"could not understand {text.strip()!r}")

    days, at = (timed[1] or "").strip(), parse_clock(timed[2])
    monthly = _monthly_day(days.removeprefix("on "))
    if monthly is not None:
        result: Parsed | None = Monthly(monthly, at)
    elif days.startswith(("every ", "each ")):
        result = _recurring(days.split(" ", 1)[1], at)
    else:
        result = _dated(days, at)
    if result is None:
        raise PhraseError(f"could not understand {text.strip()!r}")
    return result
