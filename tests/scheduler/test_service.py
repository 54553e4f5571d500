"""The scheduler service in-process: firings, misfires, failures, changes across replicas."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

from scheduler.service import CLAIM_SCOPE
from scheduler.triggers import IntervalTrigger, OnceTrigger
from storage.schedules import PlannedFiring, Schedule, ScheduleStore
from tests.fakes.chat import ScriptedChatModel
from tests.scheduler.conftest import FAST, RecordingPoster, ReplicaFactory, eventually

OWNER = "U0OWNER"


async def test_interval_schedule_posts_once_per_firing(make_replica: ReplicaFactory) -> None:
    replica = await make_replica()
    await replica.service.wait_leader()
    created = await replica.manager.create(
        team="T0", owner=OWNER, channel="C0OPS", skill="ask", when="every 1 second", tz="UTC"
    )
    poster = replica.poster
    assert isinstance(poster, RecordingPoster)
    await eventually(lambda: len(poster.answers) >= 3, timeout=6)
    await replica.service.stop()
    runs = await replica.store.firings.runs(created.schedule.id)
    ok = [r for r in runs if r.status == "ok"]
    assert len(ok) == len(poster.answers)
    assert all(channel == "C0OPS" for channel, _ in poster.answers)
    assert len({r.scheduled_for for r in ok}) == len(ok)
    # each firing ran at its own second, in order, with the leader's fencing token
    assert all(r.fence is not None and r.message_ts for r in ok)


async def test_misfire_within_grace_runs_once_and_records_the_rest(
    make_replica: ReplicaFactory,
) -> None:
    replica = await make_replica(start=False)
    now = datetime.now(UTC).replace(microsecond=0)
    anchor = now - timedelta(seconds=185)  # firings at -125, -65, -5 seconds
    trigger = IntervalTrigger(seconds=60, anchor=anchor, tz="UTC")
    row = await replica.store.create(
        team_id="T0",
        skill="ask",
        channel_id="C0OPS",
        trigger=trigger.to_dict(),
        tz="UTC",
        owner=OWNER,
        created_at=anchor,
        updated_at=anchor,
        last_fire_at=anchor + timedelta(seconds=60),
        grace_seconds=600,
    )
    await replica.service.start()
    try:
        poster = replica.poster
        assert isinstance(poster, RecordingPoster)
        await eventually(lambda: len(poster.answers) == 1)
        await asyncio.sleep(0.5)
        assert len(poster.answers) == 1  # one run, not a burst
        runs = {r.scheduled_for: r.status for r in await replica.store.firings.runs(row.id)}
        assert runs == {
            anchor + timedelta(seconds=180): "ok",
            anchor + timedelta(seconds=120): "missed",
        }
    finally:
        await replica.service.stop()


async def test_misfire_beyond_grace_is_missed_and_nothing_runs(
    make_replica: ReplicaFactory,
) -> None:
    replica = await make_replica(start=False)
    now = datetime.now(UTC).replace(microsecond=0)
    anchor = now - timedelta(seconds=225)  # firings at -165, -105, -45; next in 15 s
    trigger = IntervalTrigger(seconds=60, anchor=anchor, tz="UTC")
    row = await replica.store.create(
        team_id="T0",
        skill="ask",
        channel_id="C0OPS",
        trigger=trigger.to_dict(),
        tz="UTC",
        owner=OWNER,
        created_at=anchor,
        updated_at=anchor,
        last_fire_at=anchor + timedelta(seconds=60),
        grace_seconds=30,
    )
    await replica.service.start()
    try:
        await eventually(lambda: _statuses(replica, row.id, "missed", 2))
        await asyncio.sleep(0.3)
        poster = replica.poster
        assert isinstance(poster, RecordingPoster)
        assert poster.answers == []
        fresh = await replica.store.get(row.id)
        assert fresh is not None
        assert fresh.last_status == "missed"
        assert fresh.next_run_at == anchor + timedelta(seconds=240)
    finally:
        await replica.service.stop()


async def _statuses(replica: object, schedule_id: str, status: str, count: int) -> bool:
    runs = await replica.store.firings.runs(schedule_id)  # type: ignore[attr-defined]
    return sum(r.status == status for r in runs) >= count


async def test_failure_streak_dms_once_then_pauses(make_replica: ReplicaFactory) -> None:
    failing = ScriptedChatModel([RuntimeError("provider down")] * 50)
    replica = await make_replica(model=failing, max_failures=3)
    await replica.service.wait_leader()
    created = await replica.manager.create(
        team="T0", owner=OWNER, channel="C0OPS", skill="ask", when="every 1 second", tz="UTC"
    )
    poster = replica.poster
    assert isinstance(poster, RecordingPoster)

    async def paused() -> bool:
        row = await replica.store.get(created.schedule.id)
        return row is not None and not row.enabled

    await eventually(paused, timeout=8)
    await asyncio.sleep(1.5)  # a paused schedule does not fire again
    runs = await replica.store.firings.runs(created.schedule.id)
    # On a loaded machine a failing turn can outlast the 1 s interval; the
    # firing that lands on it is "skipped" (still going), which neither
    # counts toward the streak nor resets it.
    statuses = [r.status for r in runs if r.status != "skipped"]
    assert statuses == ["failed"] * 3, [r.status for r in runs]
    dms = poster.dms(OWNER)
    assert len(dms) == 2, dms
    assert "failed" in dms[0] and "won't repeat" in dms[0]
    assert "paused" in dms[1] and "3 times in a row" in dms[1]
    assert poster.answers == []
    row = await replica.store.get(created.schedule.id)
    assert row is not None and row.paused_reason and row.failure_streak == 3
    assert created.schedule.id not in replica.service.job_ids()


async def test_changes_on_another_replica_reach_the_leader_within_a_second(
    make_replica: ReplicaFactory,
) -> None:
    leader = await make_replica()
    await leader.service.wait_leader()
    other = await make_replica()
    await asyncio.sleep(0.3)
    assert not other.service.is_leader
    await eventually(lambda: other.service.listening.is_set() and leader.service.listening.is_set())
    poster = leader.poster
    assert isinstance(poster, RecordingPoster)

    created = await other.manager.create(
        team="T0", owner=OWNER, channel="C0OPS", skill="ask", when="every 1 second", tz="UTC"
    )
    sid = created.schedule.id
    took = await eventually(lambda: sid in leader.service.job_ids(), timeout=1.0)
    assert took < 1.0
    await eventually(lambda: len(poster.answers) >= 1, timeout=3)

    await other.manager.pause(sid, by="U0OTHER")
    took = await eventually(lambda: sid not in leader.service.job_ids(), timeout=1.0)
    assert took < 1.0
    await asyncio.sleep(0.2)
    count = len(poster.answers)
    await asyncio.sleep(1.5)
    assert len(poster.answers) == count  # nothing fired while paused

    await other.manager.resume(sid, by="U0OTHER")
    took = await eventually(lambda: sid in leader.service.job_ids(), timeout=1.0)
    assert took < 1.0
    await eventually(lambda: len(poster.answers) > count, timeout=3)

    await other.manager.delete(sid, by=OWNER)
    took = await eventually(lambda: sid not in leader.service.job_ids(), timeout=1.0)
    assert took < 1.0


async def test_run_now_from_another_replica(make_replica: ReplicaFactory) -> None:
    leader = await make_replica()
    await leader.service.wait_leader()
    other = await make_replica()
    await eventually(lambda: leader.service.listening.is_set())
    created = await other.manager.create(
        team="T0", owner=OWNER, channel="C0OPS", skill="ask", when="every day at 03:00", tz="UTC"
    )
    poster = leader.poster
    assert isinstance(poster, RecordingPoster)
    await other.manager.run_now(created.schedule.id, by=OWNER)
    took = await eventually(lambda: len(poster.answers) == 1, timeout=2)
    assert took < 1.0
    await eventually(lambda: _statuses(other, created.schedule.id, "ok", 1))
    runs = await other.store.firings.runs(created.schedule.id)
    assert [(r.kind, r.status) for r in runs] == [("manual", "ok")]
    await asyncio.sleep(0.3)
    assert len(poster.answers) == 1


async def test_standby_takes_over_when_the_leader_stops(make_replica: ReplicaFactory) -> None:
    first = await make_replica()
    await first.service.wait_leader()
    second = await make_replica()
    await eventually(lambda: second.service.listening.is_set())
    await first.service.stop()
    took = await eventually(lambda: second.service.is_leader, timeout=3)
    assert took < 1.0  # a clean stop announces itself; no waiting for the lease to expire


# -- look-ahead: firings claimed and recorded ahead of their instant -----------------------

AHEAD = dataclasses.replace(FAST, lookahead=timedelta(seconds=3), lookahead_interval=0.2)


async def _once(store: ScheduleStore, at: datetime, *, grace: int = 600) -> Schedule:
    now = datetime.now(UTC)
    return await store.create(
        team_id="T0",
        skill="ask",
        channel_id="C0OPS",
        trigger=OnceTrigger(at=at, tz="UTC").to_dict(),
        tz="UTC",
        owner=OWNER,
        created_at=now - timedelta(seconds=1),
        updated_at=now,
        grace_seconds=grace,
    )


def _soon(seconds: float) -> datetime:
    return (datetime.now(UTC) + timedelta(seconds=seconds + 1)).replace(microsecond=0)


async def _pending(store: ScheduleStore, schedule_id: str) -> bool:
    return any(
        r.status == "running" and r.started_at is None
        for r in await store.firings.runs(schedule_id)
    )


async def test_firing_is_recorded_ahead_and_starts_at_its_instant(
    make_replica: ReplicaFactory,
) -> None:
    replica = await make_replica(start=False, config=AHEAD)
    at = _soon(2)
    row = await _once(replica.store, at)
    await replica.service.start()
    try:
        await eventually(lambda: _pending(replica.store, row.id), timeout=3)
        assert datetime.now(UTC) < at  # recorded before the instant, not yet run
        poster = replica.poster
        assert isinstance(poster, RecordingPoster)
        assert poster.answers == []
        await eventually(lambda: len(poster.answers) == 1, timeout=5)
        await eventually(lambda: _statuses(replica, row.id, "ok", 1))
        [run] = await replica.store.firings.runs(row.id)
        assert run.scheduled_for == at and run.started_at is not None
        assert timedelta(0) <= run.started_at - at < timedelta(milliseconds=500)
        assert poster.times[0] >= at.timestamp()
        await asyncio.sleep(0.5)
        assert len(poster.answers) == 1
    finally:
        await replica.service.stop()


async def test_pause_after_the_firing_was_recorded_ahead_drops_it(
    make_replica: ReplicaFactory,
) -> None:
    replica = await make_replica(start=False, config=AHEAD)
    at = _soon(2.5)
    row = await _once(replica.store, at)
    await replica.service.start()
    try:
        await eventually(lambda: _pending(replica.store, row.id), timeout=3)
        await replica.manager.pause(row.id, by=OWNER)
        await asyncio.sleep(max(0.0, at.timestamp() - datetime.now(UTC).timestamp()) + 0.5)
        poster = replica.poster
        assert isinstance(poster, RecordingPoster)
        assert poster.answers == []
        assert await replica.store.firings.runs(row.id) == []  # as if it had never been recorded
    finally:
        await replica.service.stop()


async def test_pause_and_resume_before_the_instant_still_runs_it(
    make_replica: ReplicaFactory,
) -> None:
    replica = await make_replica(start=False, config=AHEAD)
    at = _soon(2.5)
    row = await _once(replica.store, at)
    await replica.service.start()
    try:
        await eventually(lambda: _pending(replica.store, row.id), timeout=3)
        await replica.manager.pause(row.id, by=OWNER)
        await replica.manager.resume(row.id, by=OWNER)
        assert datetime.now(UTC) < at
        poster = replica.poster
        assert isinstance(poster, RecordingPoster)
        await eventually(lambda: len(poster.answers) == 1, timeout=5)
        await eventually(lambda: _statuses(replica, row.id, "ok", 1))
        assert [r.status for r in await replica.store.firings.runs(row.id)] == ["ok"]
    finally:
        await replica.service.stop()


async def test_a_leader_stopping_gives_its_recorded_firings_to_the_next(
    make_replica: ReplicaFactory,
) -> None:
    first = await make_replica(start=False, config=AHEAD)
    at = _soon(2.5)
    row = await _once(first.store, at)
    await first.service.start()
    await first.service.wait_leader()
    second = await make_replica(config=AHEAD)
    await eventually(lambda: second.service.listening.is_set())
    await eventually(lambda: _pending(first.store, row.id), timeout=3)
    token = first.service.terms[-1].token
    await first.service.stop()
    await eventually(lambda: second.service.is_leader, timeout=3)
    poster = second.poster
    assert isinstance(poster, RecordingPoster)
    await eventually(lambda: len(poster.answers) == 1, timeout=6)
    await eventually(lambda: _statuses(second, row.id, "ok", 1))
    [run] = await second.store.firings.runs(row.id)
    assert run.scheduled_for == at and run.fence is not None and run.fence > token
    first_poster = first.poster
    assert isinstance(first_poster, RecordingPoster)
    assert first_poster.answers == []


async def test_firings_left_pending_by_a_dead_leader_run_once_or_are_missed(
    make_replica: ReplicaFactory,
) -> None:
    replica = await make_replica(start=False, config=AHEAD)
    store = replica.store
    now = datetime.now(UTC).replace(microsecond=0)
    fresh = await _once(store, now - timedelta(seconds=1))
    stale = await _once(store, now - timedelta(seconds=120), grace=60)
    # What a leader that crashed after its look-ahead pass leaves: claims and pending runs.
    dead = await store.firings.preclaim(
        [
            PlannedFiring(s.id, s_at, None, None)
            for s, s_at in (
                (fresh, now - timedelta(seconds=1)),
                (stale, now - timedelta(seconds=120)),
            )
        ],
        fence=1,
    )
    assert set(dead) == {fresh.id, stale.id}
    for s_id, run in dead.items():
        assert await replica.services.locks.claim(
            CLAIM_SCOPE, f"{s_id}:{run.scheduled_for.isoformat()}"
        )
    await replica.service.start()
    try:
        poster = replica.poster
        assert isinstance(poster, RecordingPoster)
        await eventually(lambda: _statuses(replica, fresh.id, "ok", 1))
        await eventually(lambda: _statuses(replica, stale.id, "missed", 1))
        await asyncio.sleep(0.5)
        assert len(poster.answers) == 1
        assert [r.status for r in await store.firings.runs(fresh.id)] == ["ok"]
        assert [r.status for r in await store.firings.runs(stale.id)] == ["missed"]
        # A second starter (a split brain's other leader) cannot start it again.
        again = await store.firings.start([dead[fresh.id].id], started_at=now, fence=99)
        assert again == []
    finally:
        await replica.service.stop()
