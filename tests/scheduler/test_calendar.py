"""Business calendars and ``every business day`` schedules: weekends, holidays, zones."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from scheduler.calendar import BusinessCalendar, CalendarError, parse_weekend
from scheduler.triggers import BusinessDayTrigger, Trigger, describe_schedule, parse_trigger

NOW = datetime(2026, 3, 3, 14, 3, 27, tzinfo=UTC)  # Tuesday


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "days"),
    [
        ("sat-sun", {5, 6}),
        ("Sat-Sun", {5, 6}),
        ("fri-sat", {4, 5}),
        ("friday-saturday", {4, 5}),
        ("fri,sat", {4, 5}),
        ("fri, sat", {4, 5}),
        ("fri sat", {4, 5}),
        ("fri-sun", {4, 5, 6}),
        ("sun-mon", {6, 0}),
        ("sun", {6}),
        ("thu-fri", {3, 4}),
        ("none", set()),
        ("", set()),
        ([4, 5], {4, 5}),
        (["fri", "sat"], {4, 5}),
    ],
)
def test_parse_weekend(spec: str | list[int | str], days: set[int]) -> None:
    assert parse_weekend(spec) == frozenset(days)


@pytest.mark.parametrize(
    ("weekend", "holidays", "problem"),
    [
        ("fri-thu", [], "all seven days leaves no business days"),
        ("mon-sun", [], "all seven days"),
        ("fri-saturnday", [], "unknown weekday 'saturnday'"),
        ("weekend", [], "unknown weekday 'weekend'"),
        ([7], [], "weekend day 7 is not 0 (Monday)"),
        ([True], [], "weekend day True"),
        ("sat-sun", ["2026-13-01"], "holiday '2026-13-01' is not an ISO date"),
        ("sat-sun", ["christmas"], "holiday 'christmas' is not an ISO date"),
    ],
)
def test_bad_calendar_config(
    weekend: str | list[int | str], holidays: list[str], problem: str
) -> None:
    with pytest.raises(CalendarError, match="business calendar: ") as caught:
        BusinessCalendar.from_config(weekend=weekend, holidays=holidays)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("day", "default", "gulf"),
    [
        (date(2026, 3, 2), True, True),  # Monday
        (date(2026, 3, 5), True, True),  # Thursday
        (date(2026, 3, 6), True, False),  # Friday
        (date(2026, 3, 7), False, False),  # Saturday
        (date(2026, 3, 8), False, True),  # Sunday
        (date(2026, 3, 19), True, False),  # Thursday, a holiday in the Gulf calendar
        (date(2026, 12, 24), False, True),  # Thursday, a holiday in the default one
    ],
)
def test_is_business_day(day: date, default: bool, gulf: bool) -> None:
    default_calendar = BusinessCalendar(holidays=frozenset({date(2026, 12, 24)}))
    gulf_calendar = BusinessCalendar.from_config(weekend="fri-sat", holidays=["2026-03-19"])
    assert default_calendar.is_business_day(day) is default
    assert gulf_calendar.is_business_day(day) is gulf


def test_next_business_day_skips_weekend_and_holidays() -> None:
    calendar = BusinessCalendar.from_config(holidays=["2026-04-03", "2026-04-06"])
    assert calendar.next_business_day(date(2026, 4, 2)) == date(2026, 4, 7)


@pytest.mark.parametrize(
    ("calendar", "text"),
    [
        (BusinessCalendar(), "weekend Sat-Sun"),
        (BusinessCalendar.from_config(weekend="fri-sat"), "weekend Fri-Sat"),
        (BusinessCalendar.from_config(weekend="sun-mon"), "weekend Sun-Mon"),
        (BusinessCalendar.from_config(weekend="mon,wed"), "weekend Mon, Wed"),
        (BusinessCalendar.from_config(weekend="none"), "no weekend"),
        (BusinessCalendar.from_config(holidays=["2026-12-25"]), "weekend Sat-Sun, 1 holiday"),
        (
            BusinessCalendar.from_config(weekend="fri", holidays=["2026-12-25", "2026-01-01"]),
            "weekend Fri, 2 holidays",
        ),
    ],
)
def test_calendar_describe(calendar: BusinessCalendar, text: str) -> None:
    assert calendar.describe() == text


def test_calendar_round_trip_and_equality() -> None:
    calendar = BusinessCalendar.from_config(
        weekend="fri-sat", holidays=["2026-12-25", "2026-01-01"]
    )
    assert calendar.to_dict() == {"weekend": [4, 5], "holidays": ["2026-01-01", "2026-12-25"]}
    assert BusinessCalendar.from_dict(calendar.to_dict()) == calendar
    assert BusinessCalendar.from_dict({}) == BusinessCalendar()
    assert hash(calendar) == hash(BusinessCalendar.from_dict(calendar.to_dict()))
    with pytest.raises(CalendarError):
        BusinessCalendar.from_dict({"weekend": "fri-sat"})


# -- every business day ----------------------------------------------------------------------

GULF = BusinessCalendar.from_config(weekend="fri-sat", holidays=["2026-03-19", "2026-03-22"])


@pytest.mark.parametrize(
    ("tz", "calendar", "after", "runs"),
    [
        pytest.param(
            "Europe/Lisbon",
            BusinessCalendar(),
            utc(2026, 3, 5, 10),  # Thursday after 09:00
            [utc(2026, 3, 6, 9), utc(2026, 3, 9, 9), utc(2026, 3, 10, 9)],
            id="Sat-Sun weekend",
        ),
        pytest.param(
            "Europe/Lisbon",
            BusinessCalendar.from_config(holidays=["2026-04-03", "2026-04-06"]),
            utc(2026, 4, 2, 10),  # Thursday before Easter
            [utc(2026, 4, 7, 8), utc(2026, 4, 8, 8), utc(2026, 4, 9, 8)],
            id="Good Friday and Easter Monday off, summer time",
        ),
        pytest.param(
            "Asia/Dubai",
            GULF,
            utc(2026, 3, 17, 6),  # Tuesday 10:00 in Dubai
            [
                utc(2026, 3, 18, 5),  # Wednesday
                # Thursday 19th is a holiday, Friday-Saturday is the weekend,
                utc(2026, 3, 23, 5),  # Sunday 22nd is a holiday too: Monday
                utc(2026, 3, 24, 5),
            ],
            id="Fri-Sat weekend with holidays",
        ),
        pytest.param(
            "Asia/Dubai",
            BusinessCalendar.from_config(weekend="fri-sat"),
            utc(2026, 3, 5, 6),  # Thursday 10:00 in Dubai
            [utc(2026, 3, 8, 5), utc(2026, 3, 9, 5), utc(2026, 3, 10, 5)],
            id="Sunday is a working day",
        ),
    ],
)
def test_business_day_runs(
    tz: str, calendar: BusinessCalendar, after: datetime, runs: list[datetime]
) -> None:
    trigger = parse_trigger("every business day at 9:00", tz=tz, now=NOW, calendar=calendar)
    assert isinstance(trigger, BusinessDayTrigger)
    got = trigger.next_n(after, len(runs))
    assert got == runs
    assert all(calendar.is_business_day(r.astimezone(ZoneInfo(tz)).date()) for r in got)


@pytest.mark.parametrize(
    "text",
    [
        "every business day at 9:00",
        "business days at 9",
        "every working day at 9am",
        "every workday at 09:00",
        "workdays at 9:00",
        "at 9:00 every business day",
    ],
)
def test_business_day_phrases(text: str) -> None:
    trigger = parse_trigger(text, tz="Asia/Dubai", now=NOW, calendar=GULF)
    assert trigger == BusinessDayTrigger(
        at=datetime(2026, 1, 1, 9).time(), tz="Asia/Dubai", calendar=GULF
    )


def test_weekday_means_monday_to_friday_whatever_the_calendar() -> None:
    trigger = parse_trigger("every weekday at 9:00", tz="Asia/Dubai", now=NOW, calendar=GULF)
    assert trigger.to_dict()["expr"] == "0 9 * * 1-5"


def test_business_day_across_dst_keeps_wall_clock() -> None:
    trigger = parse_trigger("every business day at 9:00", tz="Europe/Lisbon", now=NOW)
    # Fri 27 Mar (WET) then Mon 30 Mar (WEST): still 09:00 on the clock.
    assert trigger.next_n(utc(2026, 3, 26, 10), 2) == [utc(2026, 3, 27, 9), utc(2026, 3, 30, 8)]


def test_business_day_description_names_the_calendar() -> None:
    trigger = parse_trigger("every business day at 9:00", tz="Asia/Dubai", now=NOW, calendar=GULF)
    assert describe_schedule(trigger, now=utc(2026, 3, 17, 6)) == (
        "every business day at 09:00 (Asia/Dubai; weekend Fri-Sat, 2 holidays)\n"
        "Next runs: Wed 18 Mar 09:00 +04 · Mon 23 Mar 09:00 +04 · Tue 24 Mar 09:00 +04"
    )


def test_business_trigger_stores_its_calendar() -> None:
    trigger = parse_trigger("every business day at 9:00", tz="Asia/Dubai", now=NOW, calendar=GULF)
    restored = Trigger.from_dict(trigger.to_dict())
    assert isinstance(restored, BusinessDayTrigger)
    assert restored.calendar == GULF
