"""ScheduleStore on SQLite and PostgreSQL: CRUD, firing records, streaks, stand-up state."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scheduler.triggers import parse_trigger
from storage.errors import Conflict
from storage.schedules import PlannedFiring, Schedule, ScheduleRun, ScheduleStore
from storage.transient import is_transient

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def _schedule(store: ScheduleStore, **extra: object) -> str:
    trigger = parse_trigger("every weekday at 9:00", tz="Asia/Dubai", now=NOW)
    fields: dict[str, Any] = {
        "team_id": "T0",
        "skill": "digest",
        "input_text": "24h",
        "channel_id": "C0ALERTS",
        "trigger": trigger.to_dict(),
        "tz": "Asia/Dubai",
        "owner": "U0SAM",
        "created_at": NOW,
        "updated_at": NOW,
        **extra,
    }
    row = await store.create(**fields)
    return row.id


async def test_create_get_list_pause_resume_delete(store: ScheduleStore) -> None:
    first = await _schedule(store)
    second = await _schedule(store, channel_id="C0OTHER", owner="U0CAROL")
    row = await store.get(first)
    assert row is not None
    assert (row.skill, row.input_text, row.tz, row.enabled, row.version) == (
        "digest",
        "24h",
        "Asia/Dubai",
        True,
        1,
    )
    assert row.created_at == NOW  # aware UTC on every backend
    assert [r.id for r in await store.list_schedules(channel="C0ALERTS")] == [first]
    assert [r.id for r in await store.list_schedules(owner="U0CAROL")] == [second]
    assert (await store.find(first[:8])) is not None

    paused = await store.set_enabled(first, False, now=NOW, reason="paused by U0SAM")
    assert paused is not None and not paused.enabled and paused.version == 2
    assert set(await store.versions()) == {second}
    resumed = await store.set_enabled(
        first, True, now=NOW + timedelta(hours=1), next_run_at=NOW + timedelta(days=1)
    )
    assert resumed is not None and resumed.enabled and resumed.paused_reason is None
    assert resumed.last_fire_at == NOW + timedelta(hours=1)  # no catch-up for the pause

    assert await store.delete(first)
    assert not await store.delete(first)
    assert await store.get(first) is None
    assert [r.id for r in await store.list_schedules()] == [second]


async def test_a_firing_is_recorded_once(store: ScheduleStore) -> None:
    sid = await _schedule(store)
    at = NOW
    run = await store.firings.begin(
        sid,
        at,
        started_at=NOW,
        fence=7,
        missed=[at - timedelta(days=1)],
        next_run_at=NOW + timedelta(days=1),
    )
    assert run is not None and run.status == "running"
    again = await store.firings.begin(sid, at, started_at=NOW, fence=8)
    assert again is None  # a second leader loses
    row = await store.get(sid)
    assert row is not None and row.last_fire_at == at and row.next_run_at == NOW + timedelta(days=1)
    statuses = {r.scheduled_for: r.status for r in await store.firings.runs(sid)}
    assert statuses == {at: "running", at - timedelta(days=1): "missed"}


async def test_failure_streak_notifies_once_and_pauses_at_the_limit(store: ScheduleStore) -> None:
    sid = await _schedule(store)
    results = []
    for day in range(3):
        run = await store.firings.begin(sid, NOW + timedelta(days=day), started_at=NOW)
        assert run is not None
        results.append(
            await store.firings.finish(
                run.id, status="failed", finished_at=NOW, error="boom", max_failures=3
            )
        )
    assert [(r.streak, r.notify, r.paused) for r in results] == [
        (1, True, False),
        (2, False, False),
        (3, False, True),
    ]
    row = await store.get(sid)
    assert row is not None and not row.enabled and row.paused_reason
    # a paused schedule records no scheduled firing
    assert await store.firings.begin(sid, NOW + timedelta(days=4), started_at=NOW) is None
    await store.set_enabled(sid, True, now=NOW + timedelta(days=5))
    # success resets the streak, so the next failure notifies again
    run = await store.firings.begin(sid, NOW + timedelta(days=9), started_at=NOW)
    assert run is not None
    ok = await store.firings.finish(run.id, status="ok", finished_at=NOW, message_ts="1.2")
    assert ok.streak == 0
    run = await store.firings.begin(sid, NOW + timedelta(days=10), started_at=NOW)
    assert run is not None
    again = await store.firings.finish(run.id, status="failed", finished_at=NOW, max_failures=3)
    assert again.notify and again.streak == 1


async def test_standup_state(store: ScheduleStore) -> None:
    sid = await _schedule(store, kind="standup", skill="standup")
    session = await store.standups.open(
        schedule_id=sid,
        scheduled_for=NOW,
        team_id="T0",
        channel_id="C0TEAM",
        usergroup="S0TEAM",
        prompt="How's it going?",
        opens_at=NOW,
        closes_at=NOW + timedelta(hours=1),
        members=["U0A", "U0B"],
    )
    assert session is not None
    assert (
        await store.standups.open(
            schedule_id=sid,
            scheduled_for=NOW,
            team_id="T0",
            channel_id="C0TEAM",
            usergroup="S0TEAM",
            prompt="x",
            opens_at=NOW,
            closes_at=NOW,
            members=[],
        )
        is None
    )
    await store.standups.prompted(session.id, "U0A", dm_channel="D0A", ts="1.0")
    later = NOW + timedelta(minutes=5)
    first = await store.standups.capture_reply(
        user_id="U0A", channel="D0A", text="did X", now=later
    )
    second = await store.standups.capture_reply(
        user_id="U0A", channel="D0A", text="blocked", now=later
    )
    assert first is not None and first.first and second is not None and not second.first
    assert (
        await store.standups.capture_reply(user_id="U0A", channel="D0OTHER", text="hi", now=later)
        is None
    )
    assert (
        await store.standups.capture_reply(user_id="U0B", channel="D0A", text="hi", now=later)
        is None
    )
    too_late = NOW + timedelta(hours=2)
    assert (
        await store.standups.capture_reply(user_id="U0A", channel="D0A", text="x", now=too_late)
        is None
    )
    assert [s.id for s in await store.standups.due(too_late)] == [session.id]
    assert await store.standups.close(session.id) is not None
    assert await store.standups.close(session.id) is None  # closed once
    answers = {a.user_id: a.answer for a in await store.standups.answers(session.id)}
    assert answers == {"U0A": "did X\nblocked", "U0B": ""}


async def test_records_are_frozen_with_their_json_parsed(store: ScheduleStore) -> None:
    """What leaves storage is a frozen record with the trigger and options as mappings,
    never an ORM row (a caller cannot write through it, nor see the JSON text)."""
    sid = await _schedule(store, kind="standup", options={"usergroup": "S0TEAM"})
    row = await store.get(sid)
    assert isinstance(row, Schedule) and dataclasses.is_dataclass(row)
    assert (
        row.trigger["kind"]
        == parse_trigger("every weekday at 9:00", tz="Asia/Dubai", now=NOW).to_dict()["kind"]
    )
    assert dict(row.options) == {"usergroup": "S0TEAM"}
    assert not hasattr(row, "trigger_json") and not hasattr(row, "options_json")
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.enabled = False  # type: ignore[misc]
    run = await store.firings.begin(sid, NOW + timedelta(days=1), started_at=NOW)
    assert isinstance(run, ScheduleRun)
    assert await store.firings.get(run.id) == run


async def test_a_firing_recorded_twice_ahead_is_a_storage_conflict(store: ScheduleStore) -> None:
    """The unique firing key surfaces as storage's Conflict, not SQLAlchemy's error."""
    sid = await _schedule(store)
    at = NOW + timedelta(days=1)
    planned = PlannedFiring(
        schedule_id=sid, scheduled_for=at, next_run_at=None, previous_fire_at=None
    )
    assert set(await store.firings.preclaim([planned], fence=1)) == {sid}
    await store.set_enabled(sid, False, now=NOW)
    await store.set_enabled(sid, True, now=NOW - timedelta(days=1))  # last_fire_at kept
    row = await store.get(sid)
    assert row is not None and row.last_fire_at == at
    # A stale planner that does not see last_fire_at moved tries the same instant again:
    # the schedule row no longer matches, so nothing is recorded (no conflict either).
    assert await store.firings.preclaim([planned], fence=2) == {}
    # A manual run at that very instant hits the unique key: Conflict, nothing kept.
    await store.firings.begin(sid, at + timedelta(hours=1), started_at=NOW, kind="manual")
    manual_clash = PlannedFiring(
        schedule_id=sid,
        scheduled_for=at + timedelta(hours=1),
        next_run_at=None,
        previous_fire_at=at,
    )
    with pytest.raises(Conflict):
        await store.firings.preclaim([manual_clash], fence=3)
    assert not is_transient(Conflict("record firings ahead"))
