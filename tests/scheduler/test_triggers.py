"""Triggers: phrases and crontabs people type, their run times, DST, and misfires.

Every case is a row of explicit datetimes; nothing here reads the clock. ``NOW`` is
Tuesday 3 March 2026, 14:03:27 UTC, which is also 14:03:27 in Lisbon (WET, UTC+0).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduler.calendar import BusinessCalendar
from scheduler.triggers import (
    DEFAULT_GRACE,
    EXAMPLES,
    BusinessDayTrigger,
    CronTrigger,
    FiringPlan,
    IntervalTrigger,
    OnceTrigger,
    Trigger,
    TriggerError,
    describe_schedule,
    due_firings,
    format_run_time,
    parse_trigger,
    plan_firing,
    wall_to_utc,
)

LISBON = "Europe/Lisbon"
DUBAI = "Asia/Dubai"
NOW = datetime(2026, 3, 3, 14, 3, 27, tzinfo=UTC)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def lisbon_clock(instants: list[datetime]) -> list[str]:
    """Instants as a Lisbon wall clock shows them, with the zone abbreviation."""
    return [f"{i.astimezone(ZoneInfo(LISBON)):%a %d %H:%M %Z}" for i in instants]


# -- phrases from the issue, end to end -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "expr", "runs"),
    [
        (
            "every weekday at 9:00",
            "cron",
            "0 9 * * 1-5",
            [utc(2026, 3, 4, 9), utc(2026, 3, 5, 9), utc(2026, 3, 6, 9)],
        ),
        (
            "every monday at 10am",
            "cron",
            "0 10 * * 1",
            [utc(2026, 3, 9, 10), utc(2026, 3, 16, 10), utc(2026, 3, 23, 10)],
        ),
        (
            "every day at 17:30",
            "cron",
            "30 17 * * *",
            [utc(2026, 3, 3, 17, 30), utc(2026, 3, 4, 17, 30), utc(2026, 3, 5, 17, 30)],
        ),
        (
            "every 2 hours",
            "interval",
            "every 2 hours",
            [utc(2026, 3, 3, 16, 3, 27), utc(2026, 3, 3, 18, 3, 27), utc(2026, 3, 3, 20, 3, 27)],
        ),
        (
            "every 15 minutes",
            "interval",
            "every 15 minutes",
            [utc(2026, 3, 3, 14, 18, 27), utc(2026, 3, 3, 14, 33, 27), utc(2026, 3, 3, 14, 48, 27)],
        ),
        (
            "every 30 seconds",
            "interval",
            "every 30 seconds",
            [utc(2026, 3, 3, 14, 3, 57), utc(2026, 3, 3, 14, 4, 27), utc(2026, 3, 3, 14, 4, 57)],
        ),
        (
            # From April Lisbon is on summer time (UTC+1): 08:00 local is 07:00 UTC.
            "on the 1st of every month at 08:00",
            "cron",
            "0 8 1 * *",
            [utc(2026, 4, 1, 7), utc(2026, 5, 1, 7), utc(2026, 6, 1, 7)],
        ),
        ("tomorrow at 15:00", "once", "2026-03-04T15:00:00Z", [utc(2026, 3, 4, 15)]),
        ("in 20 minutes", "once", "2026-03-03T14:23:27Z", [utc(2026, 3, 3, 14, 23, 27)]),
        (
            "every business day at 9:00",
            "business",
            "every business day at 09:00",
            [utc(2026, 3, 4, 9), utc(2026, 3, 5, 9), utc(2026, 3, 6, 9)],
        ),
        (
            "0 9 * * 1-5",
            "cron",
            "0 9 * * 1-5",
            [utc(2026, 3, 4, 9), utc(2026, 3, 5, 9), utc(2026, 3, 6, 9)],
        ),
    ],
)
def test_issue_phrases(text: str, kind: str, expr: str, runs: list[datetime]) -> None:
    trigger = parse_trigger(text, tz=LISBON, now=NOW)
    assert trigger.kind == kind
    assert trigger.expression == expr
    assert trigger.tz == LISBON
    assert trigger.next_n(NOW, 3) == runs
    assert trigger.next_fire(NOW) == runs[0]
    assert all(run.tzinfo is UTC for run in runs)


# -- variants of the same schedule ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cron"),
    [
        ("every weekday at 9:00", "0 9 * * 1-5"),
        ("every weekday at 9", "0 9 * * 1-5"),
        ("every weekday at 9am", "0 9 * * 1-5"),
        ("every weekday at 9 AM", "0 9 * * 1-5"),
        ("every weekday at 9 a.m.", "0 9 * * 1-5"),
        ("Every Weekday At 09:00", "0 9 * * 1-5"),
        ("  every   weekday  at   9:00  ", "0 9 * * 1-5"),
        ("every weekday at 9:00.", "0 9 * * 1-5"),
        ("weekdays at 9:00", "0 9 * * 1-5"),
        ("on weekdays at 9", "0 9 * * 1-5"),
        ("each weekday at 9:00", "0 9 * * 1-5"),
        ("every week day at 9:00", "0 9 * * 1-5"),
        ("every weekday 9:00", "0 9 * * 1-5"),
        ("at 9:00 every weekday", "0 9 * * 1-5"),
        ("every weekday @ 9:00", "0 9 * * 1-5"),
        ("every day at 9.30pm", "30 21 * * *"),
        ("every day at 9:30 p.m.", "30 21 * * *"),
        ("every day at 17h30", "30 17 * * *"),
        ("daily at 17:30", "30 17 * * *"),
        ("every day at noon", "0 12 * * *"),
        ("every day at midday", "0 12 * * *"),
        ("every day at midnight", "0 0 * * *"),
        ("every day at 12am", "0 0 * * *"),
        ("every day at 12pm", "0 12 * * *"),
        ("every day at 12:30am", "30 0 * * *"),
        ("every day at 0:05", "5 0 * * *"),
        ("every monday at 10am", "0 10 * * 1"),
        ("every mon at 10:00", "0 10 * * 1"),
        ("mondays at 10am", "0 10 * * 1"),
        ("on mondays at 10am", "0 10 * * 1"),
        ("every sunday at 10:00", "0 10 * * 0"),
        ("every mon, wed and fri at 10:00", "0 10 * * 1,3,5"),
        ("every mon,wed,fri at 10:00", "0 10 * * 1,3,5"),
        ("every monday, wednesday, and friday at 10", "0 10 * * 1,3,5"),
        ("every tue/thu at 10:00", "0 10 * * 2,4"),
        ("every tues & thurs at 10:00", "0 10 * * 2,4"),
        ("mondays and fridays at 10:00", "0 10 * * 1,5"),
        ("every saturday and sunday at 10:00", "0 10 * * 0,6"),
        ("every weekend day at 10:00", "0 10 * * 0,6"),
        ("weekends at 10:00", "0 10 * * 0,6"),
        ("every thu, fri, sat at 18:00", "0 18 * * 4-6"),
        ("on the 1st of every month at 08:00", "0 8 1 * *"),
        ("on the 1st of each month at 8am", "0 8 1 * *"),
        ("the 15th of every month at 9", "0 9 15 * *"),
        ("every month on the 2nd at 9:00", "0 9 2 * *"),
        ("monthly on the 23rd at 9:00", "0 9 23 * *"),
        ("0 9 * * 1-5", "0 9 * * 1-5"),
        ("0  9 * *   MON-FRI", "0 9 * * mon-fri"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
    ],
)
def test_recurring_variants(text: str, cron: str) -> None:
    trigger = parse_trigger(text, tz=LISBON, now=NOW)
    assert isinstance(trigger, CronTrigger)
    assert trigger.cron == cron


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("every 2 hours", 7200),
        ("every two hours", 7200),
        ("every 2h", 7200),
        ("every 2 hrs", 7200),
        ("every hour", 3600),
        ("every 15 minutes", 900),
        ("every 15 mins", 900),
        ("every 15m", 900),
        ("every minute", 60),
        ("every half an hour", 1800),
        ("every 90 minutes", 5400),
        ("every 1h30m", 5400),
        ("every 1 hour and 30 minutes", 5400),
        ("every 30 seconds", 30),
        ("every 45 secs", 45),
        ("every 744 hours", 31 * 86400),
    ],
)
def test_interval_variants(text: str, seconds: int) -> None:
    trigger = parse_trigger(text, tz=LISBON, now=NOW)
    assert isinstance(trigger, IntervalTrigger)
    assert trigger.seconds == seconds
    assert trigger.anchor == NOW
    assert trigger.next_fire(NOW) == NOW + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("tomorrow at 15:00", utc(2026, 3, 4, 15)),
        ("tomorrow at 3pm", utc(2026, 3, 4, 15)),
        ("tomorrow 15:00", utc(2026, 3, 4, 15)),
        ("at 15:00 tomorrow", utc(2026, 3, 4, 15)),
        ("Tomorrow at midnight", utc(2026, 3, 4, 0)),
        ("today at 18:00", utc(2026, 3, 3, 18)),
        ("at 18:00", utc(2026, 3, 3, 18)),  # still ahead today
        ("at 9:00", utc(2026, 3, 4, 9)),  # already past today, so tomorrow
        ("in 20 minutes", utc(2026, 3, 3, 14, 23, 27)),
        ("in 20 min", utc(2026, 3, 3, 14, 23, 27)),
        ("in an hour", utc(2026, 3, 3, 15, 3, 27)),
        ("in 1 hour and 30 minutes", utc(2026, 3, 3, 15, 33, 27)),
        ("in 2 days", utc(2026, 3, 5, 14, 3, 27)),
        ("in 45 seconds", utc(2026, 3, 3, 14, 4, 12)),
        ("tuesday at 18:00", utc(2026, 3, 3, 18)),  # today is Tuesday and 18:00 is ahead
        ("tuesday at 9:00", utc(2026, 3, 10, 9)),  # today's 9:00 is gone
        ("next tuesday at 18:00", utc(2026, 3, 10, 18)),
        ("on friday at 10am", utc(2026, 3, 6, 10)),
        ("next friday at 10am", utc(2026, 3, 6, 10)),
        ("monday at noon", utc(2026, 3, 9, 12)),
        ("on 2026-04-01 at 09:00", utc(2026, 4, 1, 8)),  # summer time by then
        ("2026-04-01 9:00", utc(2026, 4, 1, 8)),
    ],
)
def test_one_offs(text: str, at: datetime) -> None:
    trigger = parse_trigger(text, tz=LISBON, now=NOW)
    assert isinstance(trigger, OnceTrigger)
    assert trigger.at == at
    assert trigger.next_n(NOW, 3) == [at]
    assert trigger.next_fire(at) is None


def test_one_off_resolves_against_now_in_the_schedule_zone() -> None:
    # 22:30 UTC on Tuesday is already 02:30 on Wednesday in Dubai: "tomorrow" is Thursday.
    late = utc(2026, 3, 3, 22, 30)
    trigger = parse_trigger("tomorrow at 9:00", tz=DUBAI, now=late)
    assert trigger.next_fire(late) == utc(2026, 3, 5, 5)


def test_now_may_be_given_in_any_zone() -> None:
    now_in_dubai = NOW.astimezone(ZoneInfo(DUBAI))
    assert parse_trigger("in 20 minutes", tz=LISBON, now=now_in_dubai) == parse_trigger(
        "in 20 minutes", tz=LISBON, now=NOW
    )


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("every blursday", "could not understand 'every blursday'"),
        ("", "the schedule is empty"),
        ("   ", "the schedule is empty"),
        ("whenever", "could not understand"),
        ("every day", "say at what time"),
        ("every weekday", "say at what time"),
        ("every mon and fri", "say at what time"),
        ("every month on the 1st", "say at what time"),
        ("every 2 days", "days or weeks is not supported"),
        ("every week", "days or weeks is not supported"),
        ("every 10 seconds", "between 30 seconds and 31 days"),
        ("every 0 minutes", "between 30 seconds and 31 days"),
        ("every 1000 hours", "between 30 seconds and 31 days"),
        ("every 999999999 hours", "between 30 seconds and 31 days"),
        ("every other monday at 9:00", "'every other …' is not supported"),
        ("every day at 25:00", "'25:00' is not a time of day"),
        ("every day at 13pm", "'13pm' is not a time of day"),
        ("every day at 0am", "'0am' is not a time of day"),
        ("every day at 9:75", "'9:75' is not a time of day"),
        ("every blursday at 9:00", "could not understand"),
        ("on the 32nd of every month at 9:00", "day 32 of the month does not exist"),
        ("on the 0th of every month at 9:00", "day 0 of the month does not exist"),
        ("monday and friday at 10:00", "say 'every monday and friday at …'"),
        ("today at 8:00", "'today at 8:00' is in the past (it was Tue 3 Mar 08:00 WET)"),
        ("on 2026-03-01 at 9:00", "is in the past"),
        ("on 2026-02-30 at 9:00", "'2026-02-30' is not a date"),
        ("in 0 minutes", "is in the past"),
        ("in 600 weeks", "more than 1830 days ahead"),
        ("in 999999999 weeks", "more than 1830 days ahead"),
        ("in a while", "'a while' is not a length of time"),
        ("tomorrow", "could not understand"),
        ("every 2 hours please", "could not understand"),
        ("every day at 9:00 and 17:00", "one time of day per schedule"),
        ("every monday at 10am, 2pm", "one time of day per schedule"),
    ],
)
def test_phrase_errors_explain_and_give_examples(text: str, problem: str) -> None:
    with pytest.raises(TriggerError) as caught:
        parse_trigger(text, tz=LISBON, now=NOW)
    assert problem in caught.value.problem
    message = str(caught.value)
    assert message.startswith(caught.value.problem)
    assert "Try: every weekday at 9:00 · every monday at 10am · every 2 hours" in message
    assert all(example in message for example in EXAMPLES)


@pytest.mark.parametrize(
    "tz", ["Europe/Lisbn", "", "Europe", "../etc/passwd", "utc", "Mars/Olympus"]
)
def test_unknown_time_zone_is_named(tz: str) -> None:
    with pytest.raises(TriggerError, match="unknown time zone") as caught:
        parse_trigger("every day at 9:00", tz=tz, now=NOW)
    assert repr(tz) in str(caught.value)
    assert "Europe/Lisbon" in str(caught.value)  # a hint at what a valid name looks like


def test_trigger_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="could not understand"):
        parse_trigger("every blursday", tz=LISBON, now=NOW)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_trigger("every day at 9:00", tz=LISBON, now=datetime(2026, 3, 3, 14))
    trigger = parse_trigger("every day at 9:00", tz=LISBON, now=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        trigger.next_fire(datetime(2026, 3, 3, 14))


# -- crontab --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "after", "runs"),
    [
        (
            "*/15 9-17 * * mon-fri",
            utc(2026, 3, 6, 17, 40),  # a Friday, after the last slot
            [utc(2026, 3, 6, 17, 45), utc(2026, 3, 9, 9), utc(2026, 3, 9, 9, 15)],
        ),
        (
            "0 12 * jan,jul *",
            NOW,
            [utc(2026, 7, 1, 12), utc(2026, 7, 2, 12), utc(2026, 7, 3, 12)],
        ),
        (
            "0 0 29 2 *",  # leap days only
            NOW,
            [utc(2028, 2, 29), utc(2032, 2, 29), utc(2036, 2, 29)],
        ),
        (
            # Both day fields restricted: the 13th OR any Friday, as in Vixie cron.
            "0 0 13 * 5",
            NOW,
            [utc(2026, 3, 6), utc(2026, 3, 13), utc(2026, 3, 20)],
        ),
        (
            # A day-of-month starting with * keeps AND: odd days that are Mondays.
            "0 0 */2 * 1",
            NOW,
            [utc(2026, 3, 9), utc(2026, 3, 23), utc(2026, 4, 13)],
        ),
        ("0 9 * * 7", NOW, [utc(2026, 3, 8, 9), utc(2026, 3, 15, 9), utc(2026, 3, 22, 9)]),
        ("0 9 * * fri-sun", NOW, [utc(2026, 3, 6, 9), utc(2026, 3, 7, 9), utc(2026, 3, 8, 9)]),
        (
            "5/20 * * * *",
            NOW,
            [utc(2026, 3, 3, 14, 5), utc(2026, 3, 3, 14, 25), utc(2026, 3, 3, 14, 45)],
        ),
        (
            "0-10/5 * * * *",
            NOW,
            [utc(2026, 3, 3, 14, 5), utc(2026, 3, 3, 14, 10), utc(2026, 3, 3, 15)],
        ),
        (
            "1,2,3 0 1 1 *",
            NOW,
            [utc(2027, 1, 1, 0, 1), utc(2027, 1, 1, 0, 2), utc(2027, 1, 1, 0, 3)],
        ),
        (
            "@hourly",
            utc(2026, 3, 3, 14),
            [utc(2026, 3, 3, 15), utc(2026, 3, 3, 16), utc(2026, 3, 3, 17)],
        ),
        (
            "59 23 31 12 *",
            NOW,
            [utc(2026, 12, 31, 23, 59), utc(2027, 12, 31, 23, 59), utc(2028, 12, 31, 23, 59)],
        ),
    ],
)
def test_crontab_next_runs_in_utc(expr: str, after: datetime, runs: list[datetime]) -> None:
    trigger = parse_trigger(expr, tz="UTC", now=NOW)
    assert trigger.next_n(after, 3) == runs


def test_next_fire_is_strictly_after() -> None:
    trigger = parse_trigger("every day at 9:00", tz="UTC", now=NOW)
    assert trigger.next_fire(utc(2026, 3, 4, 9)) == utc(2026, 3, 5, 9)
    assert trigger.next_fire(datetime(2026, 3, 4, 8, 59, 59, 999999, tzinfo=UTC)) == utc(
        2026, 3, 4, 9
    )


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("60 * * * *", "minute value 60 is out of range 0-59"),
        ("* 24 * * *", "hour value 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month value 0 is out of range 1-31"),
        ("* * 32 * *", "day-of-month value 32 is out of range 1-31"),
        ("* * * 13 *", "month value 13 is out of range 1-12"),
        ("* * * 0 *", "month value 0 is out of range 1-12"),
        ("* * * * 8", "day-of-week value 8 is out of range 0-7"),
        ("0 9 * *", "a crontab needs 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("0 9 * * * *", "got 6; seconds and year fields are not supported"),
        ("0 0 9 * * * 2026", "got 7"),
        ("*/0 * * * *", "step 0 in minute field '*/0' must be 1 or more"),
        ("*/x * * * *", "step 'x' in minute field '*/x' is not a number"),
        ("*/ * * * *", "step '' in minute field '*/' is not a number"),
        ("*/60 * * * *", "step 60 in minute field '*/60' is larger than its range 0-59"),
        ("0 */24 * * *", "step 24 in hour field '*/24' is larger than its range 0-23"),
        ("0 0-6/7 * * *", "larger than its range 0-6"),
        ("17-9 * * * *", "minute range '17-9' runs backwards"),
        ("0 9 * * fri-mon", "day-of-week range 'fri-mon' runs backwards"),
        ("1,,2 * * * *", "minute field '1,,2' has an empty list item"),
        ("1, * * * *", "has an empty list item"),
        ("0 9-* * * *", "hour field '9-*': '*' is not a number or name"),
        ("0 9 * * funday", "day-of-week field 'funday': 'funday' is not a number or name"),
        ("0 9 * foo *", "month field 'foo'"),
        ("0 9 ? * mon", "'?' is not a number or name"),
        ("0 9 * * mon#2", "'mon#2' is not a number or name"),
        ("0 9 L * *", "'l' is not a number or name"),
        ("@reboot", "unknown crontab alias '@reboot'"),
        ("@sometimes", "unknown crontab alias"),
        ("0 0 30 2 *", "crontab '0 0 30 2 *' never fires: no month has that day"),
        ("0 0 31 4,6,9,11 *", "never fires"),
    ],
)
def test_crontab_errors(expr: str, problem: str) -> None:
    with pytest.raises(TriggerError) as caught:
        parse_trigger(expr, tz=LISBON, now=NOW)
    assert problem in caught.value.problem
    assert "Try: " in str(caught.value)


def test_cron_trigger_validates_when_built_directly() -> None:
    with pytest.raises(TriggerError, match="out of range"):
        CronTrigger(cron="61 * * * *", tz="UTC")
    with pytest.raises(TriggerError, match="unknown time zone"):
        CronTrigger(cron="0 9 * * *", tz="Nowhere/Land")


# -- descriptions and the echo --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "description"),
    [
        ("every weekday at 9:00", "every weekday at 09:00 (Europe/Lisbon)"),
        ("0 9 * * mon-fri", "every weekday at 09:00 (Europe/Lisbon)"),
        ("every monday at 10am", "every monday at 10:00 (Europe/Lisbon)"),
        (
            "every mon, wed and fri at 10:00",
            "every monday, wednesday and friday at 10:00 (Europe/Lisbon)",
        ),
        ("every day at 17:30", "every day at 17:30 (Europe/Lisbon)"),
        ("weekends at 10:00", "every weekend day at 10:00 (Europe/Lisbon)"),
        ("@hourly", "every hour at :00 (Europe/Lisbon)"),
        (
            "on the 1st of every month at 08:00",
            "on the 1st of every month at 08:00 (Europe/Lisbon)",
        ),
        (
            "on the 31st of every month at 08:00",
            "on the 31st of every month at 08:00, skipping months without a 31st (Europe/Lisbon)",
        ),
        ("*/15 9-17 * * 1-5", "crontab */15 9-17 * * 1-5 (Europe/Lisbon)"),
        ("0 9 1 jan *", "crontab 0 9 1 jan * (Europe/Lisbon)"),
        ("every 2 hours", "every 2 hours (Europe/Lisbon)"),
        ("every hour", "every hour (Europe/Lisbon)"),
        ("every 90 minutes", "every 90 minutes (Europe/Lisbon)"),
        ("every 30 seconds", "every 30 seconds (Europe/Lisbon)"),
        ("every business day at 9", "every business day at 09:00 (Europe/Lisbon)"),
        ("tomorrow at 15:00", "once on Wed 4 Mar 2026 15:00 WET (Europe/Lisbon)"),
    ],
)
def test_descriptions(text: str, description: str) -> None:
    assert parse_trigger(text, tz=LISBON, now=NOW).description() == description


@pytest.mark.parametrize(
    ("text", "tz", "now", "echo"),
    [
        (
            "every weekday at 9:00",
            LISBON,
            utc(2026, 11, 29, 12),
            "every weekday at 09:00 (Europe/Lisbon)\n"
            "Next runs: Mon 30 Nov 09:00 WET · Tue 1 Dec 09:00 WET · Wed 2 Dec 09:00 WET",
        ),
        (
            "every day at 9:00",
            DUBAI,
            NOW,
            "every day at 09:00 (Asia/Dubai)\n"
            "Next runs: Wed 4 Mar 09:00 +04 · Thu 5 Mar 09:00 +04 · Fri 6 Mar 09:00 +04",
        ),
        (
            "every day at 9:00",
            LISBON,
            utc(2026, 12, 30, 12),
            "every day at 09:00 (Europe/Lisbon)\n"
            "Next runs: Thu 31 Dec 09:00 WET · Fri 1 Jan 2027 09:00 WET · Sat 2 Jan 2027 09:00 WET",
        ),
        (
            "every day at 9:00",
            LISBON,
            utc(2026, 3, 27, 12),
            "every day at 09:00 (Europe/Lisbon)\n"
            "Next runs: Sat 28 Mar 09:00 WET · Sun 29 Mar 09:00 WEST · Mon 30 Mar 09:00 WEST",
        ),
        (
            "every 30 seconds",
            LISBON,
            NOW,
            "every 30 seconds (Europe/Lisbon)\n"
            "Next runs: Tue 3 Mar 14:03:57 WET · Tue 3 Mar 14:04:27 WET · Tue 3 Mar 14:04:57 WET",
        ),
        (
            "tomorrow at 15:00",
            LISBON,
            NOW,
            "once on Wed 4 Mar 2026 15:00 WET (Europe/Lisbon)\nRuns: Wed 4 Mar 15:00 WET",
        ),
    ],
)
def test_describe_schedule_echo(text: str, tz: str, now: datetime, echo: str) -> None:
    assert describe_schedule(parse_trigger(text, tz=tz, now=now), now=now) == echo


def test_describe_schedule_once_already_fired() -> None:
    trigger = parse_trigger("tomorrow at 15:00", tz=LISBON, now=NOW)
    later = utc(2026, 3, 5)
    assert describe_schedule(trigger, now=later).endswith("\nNo upcoming runs.")


def test_format_run_time() -> None:
    assert format_run_time(utc(2026, 10, 25, 0, 30), LISBON) == "Sun 25 Oct 2026 01:30 WEST"
    assert format_run_time(utc(2026, 10, 25, 1, 30), LISBON, now=NOW) == "Sun 25 Oct 01:30 WET"


# -- storage round trip -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "every weekday at 9:00",
        "0  9 * * MON-FRI",
        "@daily",
        "*/15 9-17 * * 1-5",
        "every 2 hours",
        "every 90 minutes",
        "every 45 seconds",
        "tomorrow at 15:00",
        "in 20 minutes",
        "every business day at 9:00",
    ],
)
def test_to_dict_round_trip(text: str) -> None:
    calendar = BusinessCalendar.from_config(weekend="fri-sat", holidays=["2026-12-25"])
    trigger = parse_trigger(text, tz=LISBON, now=NOW, calendar=calendar)
    data = trigger.to_dict()
    assert set(data) >= {"kind", "expr", "tz"}
    assert Trigger.from_dict(data) == trigger
    assert Trigger.from_dict(data).next_n(NOW, 5) == trigger.next_n(NOW, 5)


def test_to_dict_shapes() -> None:
    calendar = BusinessCalendar.from_config(weekend="fri-sat", holidays=["2026-12-25"])
    assert parse_trigger("0 9 * * 1-5", tz=LISBON, now=NOW).to_dict() == {
        "kind": "cron",
        "expr": "0 9 * * 1-5",
        "tz": LISBON,
    }
    assert parse_trigger("every 2 hours", tz=LISBON, now=NOW).to_dict() == {
        "kind": "interval",
        "expr": "every 2 hours",
        "tz": LISBON,
        "anchor": "2026-03-03T14:03:27Z",
    }
    assert parse_trigger("tomorrow at 15:00", tz=LISBON, now=NOW).to_dict() == {
        "kind": "once",
        "expr": "2026-03-04T15:00:00Z",
        "tz": LISBON,
    }
    assert parse_trigger(
        "every business day at 9", tz=DUBAI, now=NOW, calendar=calendar
    ).to_dict() == {
        "kind": "business",
        "expr": "every business day at 09:00",
        "tz": DUBAI,
        "weekend": [4, 5],
        "holidays": ["2026-12-25"],
    }


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"kind": "cron", "expr": "0 9 * *", "tz": LISBON},
        {"kind": "cron", "expr": "0 9 * * *", "tz": "Nowhere/Land"},
        {"kind": "cron", "expr": 5, "tz": LISBON},
        {"kind": "weekly", "expr": "0 9 * * *", "tz": LISBON},
        {"kind": "interval", "expr": "every 2 hours", "tz": LISBON},
        {"kind": "interval", "expr": "every 2 hours", "tz": LISBON, "anchor": "yesterday"},
        {
            "kind": "interval",
            "expr": "every 2 hours",
            "tz": LISBON,
            "anchor": "2026-03-03T14:00:00",
        },
        {
            "kind": "interval",
            "expr": "every 5 seconds",
            "tz": LISBON,
            "anchor": "2026-03-03T14:00:00Z",
        },
        {"kind": "interval", "expr": "0 9 * * *", "tz": LISBON, "anchor": "2026-03-03T14:00:00Z"},
        {"kind": "once", "expr": "soon", "tz": LISBON},
        {"kind": "once", "expr": "2026-03-04T15:00:00", "tz": LISBON},
        {"kind": "business", "expr": "every business day at 9", "tz": LISBON, "weekend": "x"},
        {"kind": "business", "expr": "every business day at 9", "tz": LISBON, "holidays": ["xmas"]},
        {"kind": "business", "expr": "every day at 9", "tz": LISBON},
    ],
)
def test_from_dict_rejects_corrupt_data(data: dict[str, object]) -> None:
    with pytest.raises(TriggerError, match="stored trigger is invalid") as caught:
        Trigger.from_dict(data)
    assert "Try:" not in str(caught.value)


def test_interval_and_once_triggers_need_aware_instants() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        IntervalTrigger(seconds=60, anchor=datetime(2026, 3, 3), tz="UTC")
    with pytest.raises(ValueError, match="timezone-aware"):
        OnceTrigger(at=datetime(2026, 3, 3), tz="UTC")


# -- DST: Europe/Lisbon 2026 ------------------------------------------------------------------
# Spring forward: Sun 29 Mar 2026, 01:00 WET (UTC+0) -> 02:00 WEST (UTC+1) at 01:00 UTC.
# Fall back:      Sun 25 Oct 2026, 02:00 WEST (UTC+1) -> 01:00 WET (UTC+0) at 01:00 UTC.


def lisbon_cron(expr: str) -> Trigger:
    return parse_trigger(expr, tz=LISBON, now=NOW)


@pytest.mark.parametrize(
    ("text", "after", "runs", "clock"),
    [
        (
            "every day at 9:00",
            utc(2026, 3, 27, 10),
            [utc(2026, 3, 28, 9), utc(2026, 3, 29, 8), utc(2026, 3, 30, 8)],
            ["Sat 28 09:00 WET", "Sun 29 09:00 WEST", "Mon 30 09:00 WEST"],
        ),
        (
            "every day at 9:00",
            utc(2026, 10, 23, 10),
            [utc(2026, 10, 24, 8), utc(2026, 10, 25, 9), utc(2026, 10, 26, 9)],
            ["Sat 24 09:00 WEST", "Sun 25 09:00 WET", "Mon 26 09:00 WET"],
        ),
        (
            # 01:30 does not exist on 29 March: it runs once, at 02:00 WEST (01:00 UTC).
            "every day at 1:30",
            utc(2026, 3, 27, 10),
            [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)],
            ["Sat 28 01:30 WET", "Sun 29 02:00 WEST", "Mon 30 01:30 WEST"],
        ),
        (
            # 01:30 happens twice on 25 October: it runs once, at the first (WEST) one.
            "every day at 1:30",
            utc(2026, 10, 23, 10),
            [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
            ["Sat 24 01:30 WEST", "Sun 25 01:30 WEST", "Mon 26 01:30 WET"],
        ),
        (
            # Hourly across spring forward: 01:00 local never happens; no duplicate, no hole.
            "0 * * * *",
            utc(2026, 3, 28, 23, 30),
            [utc(2026, 3, 29, 0), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)],
            ["Sun 29 00:00 WET", "Sun 29 02:00 WEST", "Sun 29 03:00 WEST"],
        ),
        (
            # Hourly across fall back: the repeated 01:00 runs once, so one real hour is skipped.
            "0 * * * *",
            utc(2026, 10, 24, 22, 30),
            [
                utc(2026, 10, 24, 23),
                utc(2026, 10, 25, 0),
                utc(2026, 10, 25, 2),
                utc(2026, 10, 25, 3),
            ],
            ["Sun 25 00:00 WEST", "Sun 25 01:00 WEST", "Sun 25 02:00 WET", "Sun 25 03:00 WET"],
        ),
        (
            # Both 01:00 and 01:30 fall into the gap; they collapse into one run at 02:00.
            "*/30 1 * * *",
            utc(2026, 3, 28, 12),
            [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0), utc(2026, 3, 30, 0, 30)],
            ["Sun 29 02:00 WEST", "Mon 30 01:00 WEST", "Mon 30 01:30 WEST"],
        ),
        (
            # Every 20 minutes from 00:00 to 02:59 on the fall-back night: the repeated hour
            # (01:00-01:59 WET) is not run a second time.
            "*/20 0-2 * * *",
            utc(2026, 10, 24, 22, 50),
            [
                utc(2026, 10, 24, 23),
                utc(2026, 10, 24, 23, 20),
                utc(2026, 10, 24, 23, 40),
                utc(2026, 10, 25, 0),
                utc(2026, 10, 25, 0, 20),
                utc(2026, 10, 25, 0, 40),
                utc(2026, 10, 25, 2),
            ],
            [
                "Sun 25 00:00 WEST",
                "Sun 25 00:20 WEST",
                "Sun 25 00:40 WEST",
                "Sun 25 01:00 WEST",
                "Sun 25 01:20 WEST",
                "Sun 25 01:40 WEST",
                "Sun 25 02:00 WET",
            ],
        ),
    ],
)
def test_lisbon_dst(text: str, after: datetime, runs: list[datetime], clock: list[str]) -> None:
    trigger = lisbon_cron(text)
    got = trigger.next_n(after, len(runs))
    assert got == runs
    assert lisbon_clock(got) == clock


def test_lisbon_daily_keeps_wall_clock_all_year() -> None:
    trigger = lisbon_cron("every day at 9:00")
    runs = trigger.next_n(utc(2026, 1, 1), 365)
    zone = ZoneInfo(LISBON)
    assert {(r.astimezone(zone).hour, r.astimezone(zone).minute) for r in runs} == {(9, 0)}
    assert len({r.astimezone(zone).date() for r in runs}) == 365
    assert {r.hour for r in runs} == {8, 9}  # the UTC hour shifts with summer time


@pytest.mark.parametrize(
    ("after", "count"),
    [
        (utc(2026, 3, 28, 12), 23),  # the spring-forward day has 23 hours
        (utc(2026, 10, 24, 12), 24),  # the fall-back day has 25, but 01:00 runs once
    ],
)
def test_lisbon_hourly_runs_on_transition_days(after: datetime, count: int) -> None:
    trigger = lisbon_cron("0 * * * *")
    zone = ZoneInfo(LISBON)
    runs = trigger.next_n(after, 60)
    transition_day = after.date() + timedelta(days=1)
    on_day = [r for r in runs if r.astimezone(zone).date() == transition_day]
    assert len(on_day) == count
    assert len(set(runs)) == len(runs)
    assert runs == sorted(runs)
    gaps = {later - earlier for earlier, later in itertools.pairwise(runs)}
    assert gaps <= {timedelta(hours=1), timedelta(hours=2)}


@pytest.mark.parametrize(
    ("text", "now", "at"),
    [
        ("tomorrow at 1:30", utc(2026, 3, 28, 12), utc(2026, 3, 29, 1)),  # gap → 02:00 WEST
        ("tomorrow at 1:30", utc(2026, 10, 24, 12), utc(2026, 10, 25, 0, 30)),  # first 01:30
        ("tomorrow at 9:00", utc(2026, 3, 28, 12), utc(2026, 3, 29, 8)),
        ("in 2 hours", utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 2, 30)),  # elapsed, not wall
    ],
)
def test_lisbon_one_offs_across_dst(text: str, now: datetime, at: datetime) -> None:
    trigger = parse_trigger(text, tz=LISBON, now=now)
    assert trigger.next_fire(now) == at


def test_interval_is_elapsed_time_across_dst() -> None:
    anchor = utc(2026, 3, 28, 23)  # 23:00 WET
    trigger = parse_trigger("every 2 hours", tz=LISBON, now=anchor)
    runs = trigger.next_n(anchor, 3)
    assert runs == [utc(2026, 3, 29, 1), utc(2026, 3, 29, 3), utc(2026, 3, 29, 5)]
    # Wall clock jumps from 01:00 to 02:00 WEST between the anchor and the first run.
    assert lisbon_clock(runs) == ["Sun 29 02:00 WEST", "Sun 29 04:00 WEST", "Sun 29 06:00 WEST"]


def test_interval_counts_from_its_anchor_not_from_after() -> None:
    trigger = IntervalTrigger(seconds=900, anchor=utc(2026, 3, 3, 14, 0), tz="UTC")
    assert trigger.next_fire(utc(2026, 3, 3, 13)) == utc(2026, 3, 3, 14, 15)
    assert trigger.next_fire(utc(2026, 3, 3, 14, 15)) == utc(2026, 3, 3, 14, 30)
    assert trigger.next_fire(utc(2026, 3, 3, 17, 7)) == utc(2026, 3, 3, 17, 15)
    assert trigger.next_fire(utc(2027, 3, 3, 14, 0)) == utc(2027, 3, 3, 14, 15)


@pytest.mark.parametrize(
    ("zone", "local", "instant"),
    [
        (LISBON, datetime(2026, 3, 29, 0, 59), utc(2026, 3, 29, 0, 59)),
        (LISBON, datetime(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1)),  # gap
        (LISBON, datetime(2026, 3, 29, 1, 59, 59), utc(2026, 3, 29, 1)),  # gap
        (LISBON, datetime(2026, 3, 29, 2, 0), utc(2026, 3, 29, 1)),
        (LISBON, datetime(2026, 10, 25, 0, 59), utc(2026, 10, 24, 23, 59)),
        (LISBON, datetime(2026, 10, 25, 1, 0), utc(2026, 10, 25, 0, 0)),  # first of two
        (LISBON, datetime(2026, 10, 25, 1, 59), utc(2026, 10, 25, 0, 59)),  # first of two
        (LISBON, datetime(2026, 10, 25, 2, 0), utc(2026, 10, 25, 2)),
        # Lord Howe Island moves its clocks by 30 minutes (02:00 → 02:30 local).
        ("Australia/Lord_Howe", datetime(2026, 10, 4, 2, 15), utc(2026, 10, 3, 15, 30)),
        # Samoa skipped all of 30 December 2011: the first instant after is 31 Dec 00:00.
        ("Pacific/Apia", datetime(2011, 12, 30, 9, 0), utc(2011, 12, 30, 10)),
        (DUBAI, datetime(2026, 3, 29, 1, 30), utc(2026, 3, 28, 21, 30)),
    ],
)
def test_wall_to_utc(zone: str, local: datetime, instant: datetime) -> None:
    assert wall_to_utc(local, ZoneInfo(zone)) == instant


def test_a_skipped_day_runs_once_at_the_first_instant_after() -> None:
    trigger = parse_trigger("every day at 9:00", tz="Pacific/Apia", now=utc(2011, 12, 29))
    assert trigger.next_n(utc(2011, 12, 29), 3) == [
        utc(2011, 12, 29, 19),  # 29 Dec 09:00 at UTC-10
        utc(2011, 12, 30, 10),  # 30 Dec never existed: 31 Dec 00:00 at UTC+14
        utc(2011, 12, 30, 19),  # 31 Dec 09:00 at UTC+14
    ]


# -- No DST: Asia/Dubai -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "after", "runs"),
    [
        (
            "every day at 9:00",
            utc(2026, 3, 27, 12),
            [utc(2026, 3, 28, 5), utc(2026, 3, 29, 5), utc(2026, 3, 30, 5)],
        ),
        (
            "every day at 9:00",
            utc(2026, 10, 23, 12),
            [utc(2026, 10, 24, 5), utc(2026, 10, 25, 5), utc(2026, 10, 26, 5)],
        ),
        (
            "every day at 1:30",
            utc(2026, 3, 27, 12),
            [utc(2026, 3, 27, 21, 30), utc(2026, 3, 28, 21, 30), utc(2026, 3, 29, 21, 30)],
        ),
        (
            "0 * * * *",
            utc(2026, 10, 24, 20, 30),
            [utc(2026, 10, 24, 21), utc(2026, 10, 24, 22), utc(2026, 10, 24, 23)],
        ),
    ],
)
def test_dubai_constant_offset(text: str, after: datetime, runs: list[datetime]) -> None:
    assert parse_trigger(text, tz=DUBAI, now=NOW).next_n(after, 3) == runs


def test_dubai_daily_runs_at_the_same_utc_time_all_year() -> None:
    runs = parse_trigger("every day at 9:00", tz=DUBAI, now=NOW).next_n(utc(2026, 1, 1), 365)
    assert {(r.hour, r.minute) for r in runs} == {(5, 0)}
    gaps = {later - earlier for earlier, later in itertools.pairwise(runs)}
    assert gaps == {timedelta(days=1)}


def test_hourly_in_dubai_has_24_runs_every_day() -> None:
    runs = parse_trigger("0 * * * *", tz=DUBAI, now=NOW).next_n(utc(2026, 3, 28, 20), 24 * 3)
    gaps = {later - earlier for earlier, later in itertools.pairwise(runs)}
    assert gaps == {timedelta(hours=1)}


# -- misfires ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheduled", "now", "grace", "decision"),
    [
        (utc(2026, 3, 3, 9), utc(2026, 3, 3, 9), timedelta(minutes=10), "run"),
        (utc(2026, 3, 3, 9), utc(2026, 3, 3, 9, 5), timedelta(minutes=10), "run"),
        (utc(2026, 3, 3, 9), utc(2026, 3, 3, 9, 10), timedelta(minutes=10), "run"),
        (utc(2026, 3, 3, 9), utc(2026, 3, 3, 9, 10, 1), timedelta(minutes=10), "missed"),
        (utc(2026, 3, 3, 9), utc(2026, 3, 3, 12), timedelta(minutes=10), "missed"),
        (utc(2026, 3, 3, 9), utc(2026, 3, 3, 12), timedelta(hours=4), "run"),
        (utc(2026, 3, 3, 9), utc(2026, 3, 3, 9), timedelta(0), "run"),
        (utc(2026, 3, 3, 9), utc(2026, 3, 3, 9, 0, 1), timedelta(0), "missed"),
    ],
)
def test_plan_firing(scheduled: datetime, now: datetime, grace: timedelta, decision: str) -> None:
    assert plan_firing(scheduled, now, grace=grace) == decision


def test_plan_firing_refuses_a_firing_that_is_not_due() -> None:
    with pytest.raises(ValueError, match="not due"):
        plan_firing(utc(2026, 3, 3, 9, 1), utc(2026, 3, 3, 9), grace=DEFAULT_GRACE)
    with pytest.raises(ValueError, match="negative"):
        plan_firing(utc(2026, 3, 3, 9), utc(2026, 3, 3, 9), grace=timedelta(seconds=-1))


HOURLY = CronTrigger(cron="0 * * * *", tz=LISBON)
DAILY_NINE = CronTrigger(cron="0 9 * * *", tz=LISBON)


@pytest.mark.parametrize(
    ("trigger", "last_fire", "now", "grace", "plan"),
    [
        pytest.param(
            DAILY_NINE,
            utc(2026, 3, 2, 9),
            utc(2026, 3, 3, 9, 5),
            DEFAULT_GRACE,
            FiringPlan(run=utc(2026, 3, 3, 9), missed=(), next=utc(2026, 3, 4, 9)),
            id="down 5 min, 10 min grace: runs once",
        ),
        pytest.param(
            DAILY_NINE,
            utc(2026, 3, 2, 9),
            utc(2026, 3, 3, 9, 20),
            DEFAULT_GRACE,
            FiringPlan(run=None, missed=(utc(2026, 3, 3, 9),), next=utc(2026, 3, 4, 9)),
            id="down 20 min, 10 min grace: missed, waits for tomorrow",
        ),
        pytest.param(
            DAILY_NINE,
            utc(2026, 3, 2, 9),
            utc(2026, 3, 3, 9, 20),
            timedelta(minutes=30),
            FiringPlan(run=utc(2026, 3, 3, 9), missed=(), next=utc(2026, 3, 4, 9)),
            id="per-schedule grace of 30 min: runs",
        ),
        pytest.param(
            HOURLY,
            utc(2026, 3, 3, 6),
            utc(2026, 3, 3, 9, 5),
            DEFAULT_GRACE,
            FiringPlan(
                run=utc(2026, 3, 3, 9),
                missed=(utc(2026, 3, 3, 7), utc(2026, 3, 3, 8)),
                next=utc(2026, 3, 3, 10),
            ),
            id="down 3 h, hourly: latest runs, older missed",
        ),
        pytest.param(
            HOURLY,
            utc(2026, 3, 3, 6),
            utc(2026, 3, 3, 9, 30),
            DEFAULT_GRACE,
            FiringPlan(
                run=None,
                missed=(utc(2026, 3, 3, 7), utc(2026, 3, 3, 8), utc(2026, 3, 3, 9)),
                next=utc(2026, 3, 3, 10),
            ),
            id="down 3.5 h, hourly, beyond grace: all missed",
        ),
        pytest.param(
            HOURLY,
            utc(2026, 3, 3, 9),
            utc(2026, 3, 3, 9, 30),
            DEFAULT_GRACE,
            FiringPlan(run=None, missed=(), next=utc(2026, 3, 3, 10)),
            id="nothing due",
        ),
        pytest.param(
            HOURLY,
            utc(2026, 3, 3, 9),
            utc(2026, 3, 3, 10),
            DEFAULT_GRACE,
            FiringPlan(run=utc(2026, 3, 3, 10), missed=(), next=utc(2026, 3, 3, 11)),
            id="on time",
        ),
        pytest.param(
            IntervalTrigger(seconds=900, anchor=utc(2026, 3, 3, 8), tz=LISBON),
            utc(2026, 3, 3, 9),
            utc(2026, 3, 3, 9, 50),
            DEFAULT_GRACE,
            FiringPlan(
                run=utc(2026, 3, 3, 9, 45),
                missed=(utc(2026, 3, 3, 9, 15), utc(2026, 3, 3, 9, 30)),
                next=utc(2026, 3, 3, 10),
            ),
            id="interval: one run, not a burst",
        ),
        pytest.param(
            OnceTrigger(at=utc(2026, 3, 3, 9), tz=LISBON),
            None,
            utc(2026, 3, 3, 9, 4),
            DEFAULT_GRACE,
            FiringPlan(run=utc(2026, 3, 3, 9), missed=(), next=None),
            id="one-off late within grace: runs",
        ),
        pytest.param(
            OnceTrigger(at=utc(2026, 3, 3, 9), tz=LISBON),
            None,
            utc(2026, 3, 4, 9),
            DEFAULT_GRACE,
            FiringPlan(run=None, missed=(utc(2026, 3, 3, 9),), next=None),
            id="one-off long past: missed, never runs",
        ),
        pytest.param(
            OnceTrigger(at=utc(2026, 3, 3, 9), tz=LISBON),
            utc(2026, 3, 3, 9),
            utc(2026, 3, 3, 9, 4),
            DEFAULT_GRACE,
            FiringPlan(run=None, missed=(), next=None),
            id="one-off already fired",
        ),
        pytest.param(
            # Over the fall-back night the repeated 01:00 is not due a second time.
            HOURLY,
            utc(2026, 10, 24, 23),
            utc(2026, 10, 25, 2, 5),
            DEFAULT_GRACE,
            FiringPlan(
                run=utc(2026, 10, 25, 2),
                missed=(utc(2026, 10, 25, 0),),
                next=utc(2026, 10, 25, 3),
            ),
            id="hourly over fall back",
        ),
    ],
)
def test_due_firings(
    trigger: Trigger,
    last_fire: datetime | None,
    now: datetime,
    grace: timedelta,
    plan: FiringPlan,
) -> None:
    assert due_firings(trigger, last_fire, now, grace=grace) == plan


def test_due_firings_caps_the_missed_list_and_counts_the_rest() -> None:
    every_minute = CronTrigger(cron="* * * * *", tz=LISBON)
    last_fire = utc(2026, 3, 1, 0, 0)
    now = utc(2026, 3, 4, 0, 0, 30)  # 3 days = 4320 minutes later
    plan = due_firings(every_minute, last_fire, now, grace=DEFAULT_GRACE)
    assert plan.run == utc(2026, 3, 4)
    assert len(plan.missed) == 100
    assert plan.missed[-1] == utc(2026, 3, 3, 23, 59)
    assert plan.missed[0] == utc(2026, 3, 3, 22, 20)
    assert plan.missed_total == 4319
    assert plan.missed_dropped == 4219
    assert plan.next == utc(2026, 3, 4, 0, 1)


def test_due_firings_without_last_fire() -> None:
    now = utc(2026, 3, 3, 9, 5)
    # A wall-clock trigger with no history looks back one grace window only …
    assert due_firings(HOURLY, None, utc(2026, 3, 3, 9, 30)) == FiringPlan(
        run=None, missed=(), next=utc(2026, 3, 3, 10)
    )
    assert due_firings(HOURLY, None, now).run == utc(2026, 3, 3, 9)
    # … unless the schedule's creation time is given.
    plan = due_firings(HOURLY, None, now, since=utc(2026, 3, 3, 7, 30))
    assert plan == FiringPlan(
        run=utc(2026, 3, 3, 9), missed=(utc(2026, 3, 3, 8),), next=utc(2026, 3, 3, 10)
    )
    # An interval counts from its anchor.
    interval = IntervalTrigger(seconds=3600, anchor=utc(2026, 3, 3, 6, 30), tz=LISBON)
    assert due_firings(interval, None, now).missed == (
        utc(2026, 3, 3, 7, 30),
        utc(2026, 3, 3, 8, 30),
    )


def test_due_firings_rejects_negative_grace() -> None:
    with pytest.raises(ValueError, match="negative"):
        due_firings(HOURLY, None, NOW, grace=timedelta(minutes=-1))


def test_business_trigger_built_directly() -> None:
    trigger = BusinessDayTrigger(at=time(9), tz=LISBON)
    assert trigger.calendar == BusinessCalendar()
    assert trigger.next_fire(utc(2026, 3, 6, 10)) == utc(2026, 3, 9, 9)
    with pytest.raises(TriggerError, match="plain HH:MM"):
        BusinessDayTrigger(at=time(9, 0, 30), tz=LISBON)


def test_triggers_are_values() -> None:
    first = parse_trigger("every weekday at 9:00", tz=LISBON, now=NOW)
    second = parse_trigger("0 9 * * 1-5", tz=LISBON, now=utc(2027, 1, 1))
    assert first == second
    assert hash(first) == hash(second)
    assert first != parse_trigger("every weekday at 9:00", tz=DUBAI, now=NOW)
    assert first.next_n(NOW, 1) == [datetime(2026, 3, 4, 9, tzinfo=UTC)]
