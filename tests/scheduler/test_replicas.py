"""Three scheduler processes, one PostgreSQL, one Redis, one fake Slack: exactly once.

Real OS processes (``tests/scheduler/_replica_main.py``) run the leader-elected service.
An interval schedule fires every few seconds; every firing is posted exactly once, also
after the leader is killed with SIGKILL half-way. The hand-over gap is printed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.asyncio import Redis

from scheduler.feed import ChangeFeed
from scheduler.manage import ScheduleManager
from storage.keys import Keys
from storage.schedules import ScheduleStore
from storage.sql import create_engine, session_factory, upgrade
from tests.conftest import TEST_REDIS_URL, _reset_postgres
from tests.fakes.slack_api import FakeSlackApi, slack_api_server
from tests.scheduler.conftest import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
INTERVAL = 2


@dataclass
class Proc:
    popen: subprocess.Popen[str]
    lines: list[tuple[float, str]] = field(default_factory=list)

    def start_reader(self) -> None:
        def read() -> None:
            assert self.popen.stdout is not None
            for line in self.popen.stdout:
                self.lines.append((time.time(), line.strip()))

        threading.Thread(target=read, daemon=True).start()

    def said(self, word: str) -> list[float]:
        return [float(text.split()[1]) for _, text in self.lines if text.startswith(word + " ")]

    @property
    def leading(self) -> bool:
        roles = [
            text.split()[0] for _, text in self.lines if text.split()[0] in ("leader", "standby")
        ]
        return bool(roles) and roles[-1] == "leader"


@pytest.fixture
def slack() -> Iterator[FakeSlackApi]:
    with slack_api_server() as server:
        server.add_user("U0OWNER", "owner", tz="Europe/Lisbon")
        server.add_channel("C0OPS", "ops", members=["U0OWNER"])
        yield server


async def test_three_processes_post_each_firing_exactly_once(
    postgres_url: str, real_redis: Redis, keys: Keys, slack: FakeSlackApi
) -> None:
    await _reset_postgres(postgres_url)
    await upgrade(postgres_url)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        Proc(
            subprocess.Popen(
                [
                    sys.executable,
                    "-u",
                    "-m",
                    "tests.scheduler._replica_main",
                    postgres_url,
                    TEST_REDIS_URL,
                    keys.prefix,
                    slack.base_url,
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )
        for _ in range(3)
    ]
    for proc in procs:
        proc.start_reader()
    engine = create_engine(postgres_url)
    try:
        await eventually(lambda: sum(p.leading for p in procs) == 1, timeout=30)
        store = ScheduleStore(sessions=session_factory(engine))
        from datetime import timedelta

        manager = ScheduleManager(
            store=store,
            feed=ChangeFeed(redis=real_redis, keys=keys),
            skills=lambda: ["ask"],
            min_interval=timedelta(seconds=1),
        )
        created = await manager.create(
            team="T0FAKE",
            owner="U0OWNER",
            channel="C0OPS",
            skill="ask",
            when=f"every {INTERVAL} seconds",
            tz="UTC",
        )

        def posts() -> list[dict[str, object]]:
            return [m for m in slack.messages("C0OPS") if m.get("bot_id")]

        await eventually(lambda: len(posts()) >= 2, timeout=INTERVAL * 4 + 2)
        await asyncio.sleep(0.3)  # between two firings
        leader = next(p for p in procs if p.leading)
        killed_at = time.time()
        leader.popen.send_signal(signal.SIGKILL)
        leader.popen.wait(5)
        before = len(posts())

        await eventually(lambda: any(p.leading for p in procs if p is not leader), timeout=10)
        await eventually(lambda: len(posts()) >= before + 3, timeout=INTERVAL * 4 + 4)
        new_leader = next(p for p in procs if p is not leader and p.leading)
        gap = new_leader.said("leader")[-1] - killed_at
        for proc in procs:
            if proc is not leader:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.popen.wait(20)

        runs = await store.firings.runs(created.schedule.id, limit=1000)
        ok = [r for r in runs if r.status == "ok"]
        posted = posts()
        print(
            f"\nhand-over gap after SIGKILL: {gap:.2f}s; firings ok={len(ok)} "
            f"missed={sum(r.status == 'missed' for r in runs)} posts={len(posted)}"
        )
        assert len(posted) == len(ok), "every recorded firing posted exactly once"
        assert len({r.scheduled_for for r in runs}) == len(runs)
        assert {str(m["ts"]) for m in posted} == {r.message_ts for r in ok}
        assert len({r.fence for r in ok}) >= 2, "firings ran under two leadership terms"
        assert not [r for r in runs if r.status not in ("ok", "missed")]
        assert gap < 3.0
        # consecutive firings are one interval apart: none doubled, none lost silently
        times = sorted(r.scheduled_for for r in runs)
        assert all((b - a).total_seconds() == INTERVAL for a, b in itertools.pairwise(times))
    finally:
        for proc in procs:
            if proc.popen.poll() is None:
                proc.popen.kill()
                proc.popen.wait(5)
        await engine.dispose()
