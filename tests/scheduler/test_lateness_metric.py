"""``switchboard_schedule_lateness_seconds``: how late each firing starts, as recorded.

A real replica (built by ``switchboard.scheduling.build_scheduler``) fires an every-second
schedule; the histogram must count exactly the firings that started, and its sum must be
the lateness the schedule store recorded for them (``started_at - scheduled_for``).
"""

from __future__ import annotations

from storage.schedules import ScheduleRun
from tests.scheduler.conftest import RecordingPoster, ReplicaFactory, eventually


async def test_each_firing_reports_its_lateness(make_replica: ReplicaFactory) -> None:
    replica = await make_replica()
    registry = replica.services.metrics.registry

    def observed(suffix: str) -> float:
        return registry.get_sample_value(f"switchboard_schedule_lateness_seconds_{suffix}") or 0.0

    assert observed("count") == 0.0
    await replica.service.wait_leader()
    created = await replica.manager.create(
        team="T0", owner="U0OWNER", channel="C0OPS", skill="ask", when="every 1 second", tz="UTC"
    )
    poster = replica.poster
    assert isinstance(poster, RecordingPoster)
    await eventually(lambda: len(poster.answers) >= 2, timeout=8)
    await replica.service.stop()

    runs = await replica.store.firings.runs(created.schedule.id)
    started = [r for r in runs if r.started_at is not None]
    done = [r for r in started if r.status == "ok"]
    assert len(done) >= 2

    def late(rows: list[ScheduleRun]) -> float:
        return sum(max(0.0, (r.started_at - r.scheduled_for).total_seconds()) for r in rows)

    # Every firing that ran was measured (one started as the leader stopped may be too).
    assert len(done) <= observed("count") <= len(started)
    assert late(done) - 1e-3 <= observed("sum") <= late(started) + 1e-3
    assert observed("sum") < 5 * len(started)  # started near their instants, not minutes late
