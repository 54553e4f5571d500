"""Fencing by attempt: a worker whose job the stalled-job sweeper gave to another worker
(it was starved of CPU or paused, so its heartbeats stopped) finds out before it posts,
posts nothing, and does not end the job under the worker that took it over."""

from __future__ import annotations

import asyncio

import pytest

from storage.runqueue import Handlers, JobInfo, RunQueue, Superseded
from tests.runqueue.conftest import QueueBackend
from tests.runqueue.test_queue import submit, wait_for

pytestmark = pytest.mark.postgres


class Poster:
    """A thread handler that "posts" once its work is done, behind the fence."""

    def __init__(self, queue: RunQueue, name: str, *, hold: asyncio.Event | None = None) -> None:
        self.queue = queue
        self.name = name
        self.hold = hold
        self.started = asyncio.Event()
        self.posted: list[tuple[str, int, int]] = []
        self.fenced: list[int] = []

    async def run(self, thread_key: str, job: JobInfo) -> None:
        self.started.set()
        if self.hold is not None:
            await self.hold.wait()  # "starved": the job is taken away meanwhile
        try:
            await job.check()
        except Superseded:
            self.fenced.append(job.attempt)
            raise
        items = await self.queue.inbox.claim(thread_key, job.id)
        self.posted.append((thread_key, job.id, job.attempt))
        await self.queue.inbox.finish([i.id for i in items], "reply")

    async def stopped(self, thread_key: str, job: JobInfo) -> None:
        raise AssertionError("nobody pressed Stop")


async def test_a_worker_that_lost_its_job_to_the_sweeper_posts_nothing(
    pg_queue: QueueBackend,
) -> None:
    slow_queue, live_queue = pg_queue.queue(), pg_queue.queue()
    hold = asyncio.Event()
    slow = Poster(slow_queue, "slow", hold=hold)
    live = Poster(live_queue, "live")
    async with slow_queue.opened(), live_queue.opened():
        stop = asyncio.Event()
        # one slot, taken by the held job: it cannot fetch the retried job itself
        slow_worker = asyncio.create_task(
            slow_queue.run_worker(Handlers(thread=slow), stop=stop, concurrency=1)
        )
        await submit(slow_queue, "T1", "hello")
        await asyncio.wait_for(slow.started.wait(), 20)
        manager = slow_queue.app.job_manager
        [job] = list(await manager.list_jobs_async(status="doing"))
        await manager.retry_job(job)  # what the sweeper does to a worker without heartbeats
        live_worker = asyncio.create_task(live_queue.run_worker(Handlers(thread=live), stop=stop))
        await wait_for(lambda: bool(live.posted), timeout=20)
        hold.set()  # the starved worker wakes up
        await wait_for(lambda: bool(slow.fenced), timeout=20)
        await asyncio.sleep(1.0)
        final = await slow_queue.job(int(job.id or 0))
        stats = slow_queue.worker_stats()
        stop.set()
        await asyncio.gather(slow_worker, live_worker)
    print(
        f"fencing: live posted {live.posted}; slow fenced at attempts {slow.fenced}; "
        f"slow posted {slow.posted}; job {final.status if final else None}; "
        f"superseded={stats.superseded}"
    )
    assert live.posted == [("T1", job.id, 1)]
    assert slow.posted == [] and slow.fenced == [0]
    assert final is not None and final.status == "succeeded"
    assert stats.superseded == 1


async def test_the_attempt_that_owns_its_job_holds_it(pg_queue: QueueBackend) -> None:
    """The positive control: no sweep, the fence lets the only attempt through."""
    queue = pg_queue.queue()
    poster = Poster(queue, "only")
    async with queue.opened():
        stop = asyncio.Event()
        worker = asyncio.create_task(queue.run_worker(Handlers(thread=poster), stop=stop))
        await submit(queue, "T2", "hi")
        await wait_for(lambda: bool(poster.posted), timeout=20)
        stop.set()
        await worker
    assert poster.fenced == [] and [p[0] for p in poster.posted] == ["T2"]
