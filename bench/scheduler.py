"""Scheduler benchmark: 10,000 schedules, start-up to first firing, lateness of 200 at once.

    .venv/bin/python bench/scheduler.py [--schedules 10000] [--burst 200] [--runs 16] [--embedded]

Uses the local PostgreSQL (a fresh ``sbbench_*`` database from ``TEST_DATABASE_URL``) and
Redis (``TEST_REDIS_URL``) unless ``--embedded`` (SQLite + fakeredis). The model is a
scripted zero-latency chat model; posts go to an in-memory poster, so the numbers are the
scheduler's own (SQL, Redis, runtime), not Slack's.

Measured:

* **start-up → first firing**: from ``SchedulerService.start()`` on a fresh process until
  the first answer is posted, with 10,000 schedules in SQL (one of them already due).
* **lateness**: ``burst`` daily schedules share one wall-clock minute (``M H * * *``); for
  each firing, run start - scheduled time (the target: p99 under 1 s), and post time -
  scheduled time. The scheduler claims and records these firings a few seconds ahead
  (its look-ahead), so run start measures the instant path alone; posting is bounded by
  the runs' CPU time on one event loop (~15-20 ms each with this model).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scheduler.ports import DropNotice, Posted
from scheduler.service import SchedulerConfig
from scheduler.triggers import CronTrigger, OnceTrigger
from storage.redis import create_redis
from storage.schedules import ScheduleStore
from storage.sql import upgrade
from switchboard.scheduling import build_scheduler
from switchboard.services import open_services
from switchboard.settings import Settings
from switchboard.testing import ScriptedChatModel

PG = os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


class TimedPoster:
    def __init__(self) -> None:
        self.posted: dict[str, float] = {}
        self.first: float | None = None

    async def answer(
        self,
        channel: str,
        text: str,
        *,
        skill: str,
        run_id: str | None,
        dropped: DropNotice | None = None,
    ) -> Posted:
        now = time.time()
        self.first = self.first or now
        self.posted[channel] = now
        return Posted(channel=channel, ts=f"{now:.6f}")

    async def notice(self, channel: str, text: str, *, later: bool = False) -> Posted:
        return Posted(channel=channel, ts=f"{time.time():.6f}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def make_database(embedded: bool) -> tuple[str, str | None, object]:
    if embedded:
        path = Path(f"/tmp/sbbench_{uuid.uuid4().hex[:6]}.db")
        return f"sqlite+aiosqlite:///{path}", None, path
    import asyncpg

    name = f"sbbench_{os.getpid()}"
    admin = PG.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return PG.rsplit("/", 1)[0] + f"/{name}", REDIS, name


async def drop_database(embedded: bool, handle: object) -> None:
    if embedded:
        assert isinstance(handle, Path)
        handle.unlink(missing_ok=True)
        return
    import asyncpg

    conn = await asyncpg.connect(PG.replace("postgresql+asyncpg://", "postgresql://"))
    await conn.execute(f'DROP DATABASE IF EXISTS "{handle}" WITH (FORCE)')
    await conn.close()


async def bench(total: int, burst: int, embedded: bool, runs: int) -> None:
    url, redis_url, handle = await make_database(embedded)
    await upgrade(url)
    prefix = f"sbbench-{uuid.uuid4().hex[:8]}"
    settings = Settings.from_env(
        {
            "DATABASE_URL": url,
            "SWITCHBOARD_REDIS_PREFIX": prefix,
            "SWITCHBOARD_PII_KEY": "k",
            "SWITCHBOARD_AUDIT_KEY": "bench-audit-key-0123456789abcdef-0123",
        }
    )
    redis = create_redis(redis_url)
    model = ScriptedChatModel(default="ok")
    try:
        async with open_services(
            settings,
            model_factory=lambda _n: model,
            env={},
            redis=redis,
            max_concurrent_runs=64,
        ) as services:
            store = ScheduleStore(sessions=services.sessions)
            now = datetime.now(UTC).replace(microsecond=0)
            # the burst minute: the first full minute at least 45 s ahead
            target = (now + timedelta(seconds=105)).replace(second=0)
            rows = []
            burst_cron = CronTrigger(cron=f"{target.minute} {target.hour} * * *", tz="UTC")
            for i in range(total):
                if i < burst:
                    trigger = burst_cron.to_dict()
                elif i == burst:
                    trigger = OnceTrigger(at=now, tz="UTC").to_dict()  # due at once
                else:
                    minute = (target.minute + 2 + i % 50) % 60
                    hour = (target.hour + 1 + i % 20) % 24
                    trigger = CronTrigger(cron=f"{minute} {hour} * * *", tz="UTC").to_dict()
                rows.append(
                    {
                        "team_id": "T0",
                        "skill": "ask",
                        "input_text": "status?",
                        "channel_id": f"C{i:06d}",
                        "trigger": trigger,
                        "tz": "UTC",
                        "owner": "cli",
                        "created_at": now - timedelta(seconds=1),
                        "updated_at": now,
                    }
                )
            started = time.perf_counter()
            for start in range(0, len(rows), 1000):
                await store.add_many(rows[start : start + 1000])
            insert_s = time.perf_counter() - started

            poster = TimedPoster()
            service = build_scheduler(
                services,
                client=None,  # the scheduler's own costs, not Slack's
                poster=poster,
                config=SchedulerConfig(resync_interval=30.0, max_concurrent_runs=runs),
            )
            t0 = time.time()
            await service.start()
            await service.wait_leader(timeout=120)
            leader_s = time.time() - t0
            while poster.first is None:
                await asyncio.sleep(0.005)
            first_s = poster.first - t0
            jobs = len(service.job_ids())

            burst_channels = {f"C{i:06d}" for i in range(burst)}
            deadline = target.timestamp() + 60
            while not burst_channels <= set(poster.posted) and time.time() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            post_late = [
                poster.posted[c] - target.timestamp() for c in burst_channels if c in poster.posted
            ]
            start_late = []
            for row in await store.list_schedules():
                if row.channel_id in burst_channels:
                    for run in await store.firings.runs(row.id, limit=1):
                        if run.started_at is not None:
                            start_late.append((run.started_at - run.scheduled_for).total_seconds())
            statuses = {
                st: await store.firings.count(status=st)
                for st in ("running", "ok", "failed", "missed", "skipped")
            }
            await service.stop()
    finally:
        await redis.aclose()
        await drop_database(embedded, handle)

    backend = "SQLite + fakeredis" if embedded else "PostgreSQL + Redis"
    print(f"\nscheduler benchmark · {total:,} schedules · {backend} · scripted zero-latency model")
    print(f"{'metric':<44}{'value':>12}")
    print(f"{'insert ' + format(total, ',') + ' schedules':<44}{insert_s:>11.2f}s")
    print(f"{'start() → leader with all jobs loaded':<44}{leader_s:>11.2f}s")
    print(f"{'start() → first firing posted':<44}{first_s:>11.2f}s")
    print(f"{'jobs loaded':<44}{jobs:>12,}")
    print(f"{'run records by status':<44}{statuses}")
    print(f"{f'burst: {burst} firings in one minute, posted':<44}{len(post_late):>12}")
    if start_late:
        print(f"{'lateness, run start - scheduled  p50':<44}{pct(start_late, 0.5) * 1000:>10.0f}ms")
        print(
            f"{'lateness, run start - scheduled  p99':<44}{pct(start_late, 0.99) * 1000:>10.0f}ms"
        )
    if post_late:
        print(f"{'lateness, posted - scheduled     p50':<44}{pct(post_late, 0.5) * 1000:>10.0f}ms")
        print(f"{'lateness, posted - scheduled     p99':<44}{pct(post_late, 0.99) * 1000:>10.0f}ms")
        print(f"{'lateness, posted - scheduled     max':<44}{max(post_late) * 1000:>10.0f}ms")
    if start_late:
        met = "met" if pct(start_late, 0.99) < 1 else "NOT met"
        print(f"{'target: run start p99 < 1 s':<44}{met:>12}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--embedded", action="store_true")
    parser.add_argument("--runs", type=int, default=16, help="max_concurrent_runs")
    args = parser.parse_args()
    asyncio.run(bench(args.schedules, args.burst, args.embedded, args.runs))


if __name__ == "__main__":
    main()
