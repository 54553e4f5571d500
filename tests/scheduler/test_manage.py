"""Creating schedules: the one-line form, validation (nothing saved), the echo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduler.calendar import BusinessCalendar
from scheduler.errors import InvalidSchedule
from scheduler.manage import OneLine, ScheduleManager, parse_one_line
from storage.schedules import ScheduleStore

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # a Friday


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "digest #payments-alerts every weekday at 9:00",
            OneLine(skill="digest", channel="#payments-alerts", when="every weekday at 9:00"),
        ),
        (
            "digest <#C0PAY|payments-alerts> every weekday at 9:00 tz Asia/Dubai -- last 12h",
            OneLine(
                skill="digest",
                channel="C0PAY",
                when="every weekday at 9:00",
                tz="Asia/Dubai",
                text="last 12h",
            ),
        ),
        (
            "ask every 2 hours -- any news?",
            OneLine(skill="ask", when="every 2 hours", text="any news?"),
        ),
        (
            "Digest C0PAYALERTS 0 9 * * 1-5 tz America/New_York",
            OneLine(
                skill="digest", channel="C0PAYALERTS", when="0 9 * * 1-5", tz="America/New_York"
            ),
        ),
        (
            "standup <!subteam^S0ENG|@eng> #team every weekday at 9:30 for 45 minutes -- Hi!",
            OneLine(
                skill="standup",
                channel="#team",
                when="every weekday at 9:30",
                text="Hi!",
                usergroup="S0ENG",
                window=timedelta(minutes=45),
            ),
        ),
    ],
)
def test_one_line_form(text: str, expected: OneLine) -> None:
    assert parse_one_line(text) == expected


@pytest.mark.parametrize(
    "text", ["digest", "", "standup #team every day at 9", "digest #ops tz Europe/Lisbon"]
)
def test_one_line_form_errors(text: str) -> None:
    with pytest.raises(InvalidSchedule):
        parse_one_line(text)


def _manager(store: ScheduleStore, calendar: BusinessCalendar | None = None) -> ScheduleManager:
    return ScheduleManager(
        store=store,
        feed=None,
        skills=lambda: ["digest", "ask"],
        calendar=calendar,
        clock=lambda: NOW,
    )


async def test_create_echoes_description_and_next_three_runs(store: ScheduleStore) -> None:
    manager = _manager(store)
    created = await manager.create(
        team="T0",
        owner="U0DEV",
        channel="C0PAY",
        skill="digest",
        when="every weekday at 9:00",
        tz="Asia/Dubai",
        text="24h",
    )
    assert created.echo == (
        "every weekday at 09:00 (Asia/Dubai)\n"
        "Next runs: Mon 30 Nov 09:00 +04 · Tue 1 Dec 09:00 +04 · Wed 2 Dec 09:00 +04"
    )
    row = created.schedule
    assert row.next_run_at == datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
    assert manager.summary(row) == (
        "digest every weekday at 09:00 (Asia/Dubai) → next Mon 30 Nov 09:00 +04"
    )


async def test_business_days_follow_the_configured_calendar(store: ScheduleStore) -> None:
    calendar = BusinessCalendar.from_config(weekend="fri-sat", holidays=["2026-11-29"])
    manager = _manager(store, calendar)
    created = await manager.create(
        team="T0",
        owner="U0DEV",
        channel="C0PAY",
        skill="digest",
        when="every business day at 9:00",
        tz="Asia/Dubai",
    )
    assert "weekend Fri-Sat, 1 holiday" in created.echo
    assert "Mon 30 Nov 09:00" in created.echo.splitlines()[1].split(" · ")[0]


@pytest.mark.parametrize(
    ("skill", "when", "tz", "problem"),
    [
        ("digest", "every fortnight", "UTC", "Try: every weekday at 9:00"),
        ("digest", "every day at 9", "Mars/Olympus", "unknown time zone"),
        ("nosuch", "every day at 9", "UTC", "no skill named `nosuch`"),
        ("digest", "every 5 seconds", "UTC", "between 30 seconds"),
        ("digest", "yesterday at 9:00", "UTC", "Try:"),
    ],
)
async def test_invalid_input_saves_nothing(
    store: ScheduleStore, skill: str, when: str, tz: str, problem: str
) -> None:
    with pytest.raises(InvalidSchedule) as error:
        await _manager(store).create(
            team="T0", owner="U0DEV", channel="C0PAY", skill=skill, when=when, tz=tz
        )
    assert problem in str(error.value)
    assert await store.list_schedules() == []
