"""The scheduler service in-process: firings, misfires, failures, changes across replicas."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from scheduler.triggers import IntervalTrigger
from storage.schedules import dumps
from tests.fakes.chat import ScriptedChatModel
from tests.scheduler.conftest import RecordingPoster, ReplicaFactory, eventually

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
    runs = await replica.store.runs(created.schedule.id)
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
        trigger_json=dumps(trigger.to_dict()),
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
        runs = {r.scheduled_for: r.status for r in await replica.store.runs(row.id)}
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
        trigger_json=dumps(trigger.to_dict()),
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
    runs = await replica.store.runs(schedule_id)  # type: ignore[attr-defined]
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
    runs = await replica.store.runs(created.schedule.id)
    assert [r.status for r in runs] == ["failed"] * 3
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
    runs = await other.store.runs(created.schedule.id)
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
