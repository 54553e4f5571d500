"""The run queue's guarantees, on the embedded in-memory connector and on PostgreSQL:
per-thread order across workers, folding, dedupe, cancel, retries, hand-back, stalled jobs."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from storage.runqueue import Handlers, JobInfo, Retryable, RunQueue
from storage.runqueue.inbox import new_row
from storage.runqueue.queue import _ADMIT_SQL
from tests.runqueue.conftest import QueueBackend


@dataclass
class Recorder:
    """A thread handler that claims the inbox like the bot does and records timings."""

    queue: RunQueue
    delay: float = 0.05
    worker: str = "w"
    spans: dict[str, list[tuple[float, float, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    texts: dict[str, list[list[str]]] = field(default_factory=lambda: defaultdict(list))
    stopped_jobs: list[int] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    before: Callable[[str, JobInfo], Awaitable[None]] | None = None
    after_claim: Callable[[str, JobInfo], Awaitable[None]] | None = None

    async def run(self, thread_key: str, job: JobInfo) -> None:
        start = time.monotonic()
        self.started.set()
        if self.before is not None:
            await self.before(thread_key, job)
        items = await self.queue.inbox.claim(thread_key, job.id)
        if self.after_claim is not None:
            await self.after_claim(thread_key, job)
        await asyncio.sleep(self.delay)
        self.texts[thread_key].append([str(i.payload["text"]) for i in items])
        await self.queue.inbox.finish([i.id for i in items], "reply")
        self.spans[thread_key].append((start, time.monotonic(), self.worker))

    async def stopped(self, thread_key: str, job: JobInfo) -> None:
        self.stopped_jobs.append(job.id)
        for item in await self.queue.inbox.by_job(job.id):
            await self.queue.inbox.finish([item.id], "stopped")


async def submit(queue: RunQueue, thread: str, text: str, key: str | None = None) -> bool:
    row = await queue.inbox.add(
        dedupe_key=key or f"{thread}:{text}",
        thread_key=thread,
        user_id="U1",
        payload={"text": text},
    )
    if row is None:
        return False
    await queue.wake(thread)
    return True


async def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def overlaps(spans: list[tuple[float, float, str]]) -> int:
    ordered = sorted(spans)
    return sum(1 for a, b in itertools.pairwise(ordered) if b[0] < a[1])


async def test_dedupe_key_stores_a_message_once(queue_backend: QueueBackend) -> None:
    queue = queue_backend.queue()
    async with queue.opened():
        assert await submit(queue, "T1", "hello", key="C1-1.0")
        assert not await submit(queue, "T1", "hello again", key="C1-1.0")
        backlog = await queue.inbox.backlog()
        assert backlog.pending == 1


async def test_messages_waiting_in_a_busy_thread_fold_into_one_turn(
    queue_backend: QueueBackend,
) -> None:
    queue = queue_backend.queue()
    gate = asyncio.Event()

    async def hold_first(thread: str, job: JobInfo) -> None:
        if not gate.is_set():
            gate.set()
            await asyncio.sleep(0.5)  # while this runs, three more messages arrive

    async with queue.opened():
        rec = Recorder(queue, delay=0.0, after_claim=hold_first)
        stop = asyncio.Event()
        worker = asyncio.create_task(
            queue.run_worker(Handlers(thread=rec), concurrency=4, stop=stop)
        )
        await submit(queue, "T1", "one")
        await gate.wait()
        woken = [await queue.wake("T1") for _ in range(2)]
        for text in ("two", "three", "four"):
            await queue.inbox.add(
                dedupe_key=text, thread_key="T1", user_id="U1", payload={"text": text}
            )
            await queue.wake("T1")
        await wait_for(lambda: sum(len(t) for t in rec.texts["T1"]) == 4)
        stop.set()
        await worker
    print(f"turns={rec.texts['T1']} extra-wakes={woken}")
    assert rec.texts["T1"][0] == ["one"]
    assert ["two", "three", "four"] in rec.texts["T1"]  # one turn for the three waiting
    assert woken[1] is None  # a second waiting job was refused: folded


async def admit(queue: RunQueue, thread: str, text: str, *, user: str = "U1") -> Any:
    return await queue.admit(
        dedupe_key=f"{thread}:{text}", thread_key=thread, user_id=user, payload={"text": text}
    )


async def test_admit_stores_the_message_and_wakes_its_thread_once(
    queue_backend: QueueBackend,
) -> None:
    """The receiver's one call: the message is stored, its thread woken; a second message
    while that job waits folds into it; a redelivered message is neither stored nor woken."""
    queue = queue_backend.queue()
    async with queue.opened():
        first = await admit(queue, "T:C1:1.0", "one")
        second = await admit(queue, "T:C1:1.0", "two")
        again = await admit(queue, "T:C1:1.0", "one")
        assert first is not None and first.job_id is not None
        assert second is not None and second.job_id is None  # folded into the waiting job
        assert again is None
        waiting = await queue.jobs(status="todo")
        assert [(j.id, j.lock, j.args["thread"]) for j in waiting] == [
            (first.job_id, "T:C1:1.0", "T:C1:1.0")
        ]
        rec = Recorder(queue, delay=0.0)
        stop = asyncio.Event()
        worker = asyncio.create_task(
            queue.run_worker(Handlers(thread=rec), concurrency=2, stop=stop)
        )
        await wait_for(lambda: bool(rec.texts["T:C1:1.0"]))
        stop.set()
        await worker
    assert rec.texts["T:C1:1.0"] == [["one", "two"]]  # one turn, both messages, in order
    assert (await queue.inbox.backlog()).pending == 0


@pytest.mark.postgres
async def test_admit_gives_the_job_the_fair_priority_of_what_is_already_queued(
    pg_queue: QueueBackend,
) -> None:
    """The priority computed in SQL is Share.priority: a person's own open threads count
    fully, their channel's at a quarter."""
    queue = pg_queue.queue()
    async with queue.opened():
        for k in range(3):  # U1 has three threads open in C1
            await admit(queue, f"T:C1:{k}.0", "busy")
        for k in range(5):  # others have five more in C1
            await admit(queue, f"T:C1:{10 + k}.0", "busy", user="U2")
        admitted = await admit(queue, "T:C1:99.0", "mine")
        fresh = await admit(queue, "T:C2:1.0", "elsewhere", user="U3")
        assert admitted is not None and admitted.job_id is not None
        assert fresh is not None and fresh.job_id is not None
        assert admitted.share.user_threads == 3 and admitted.share.channel_threads == 8
        assert admitted.share.priority == -(3 + 8 // 4)
        async with pg_queue.engine.connect() as conn:
            rows = dict(
                (
                    await conn.execute(
                        text("SELECT id, priority FROM procrastinate_jobs WHERE id IN (:a, :b)"),
                        {"a": admitted.job_id, "b": fresh.job_id},
                    )
                ).all()
            )
    print(f"share={admitted.share} priorities={rows}")
    assert rows == {admitted.job_id: admitted.share.priority, fresh.job_id: 0}


async def test_one_thread_never_runs_twice_at_once_across_workers(pg_queue: QueueBackend) -> None:
    """Two workers (separate connection pools, as two processes) share 10 threads x 6
    messages: no two turns of a thread overlap, and threads do run in parallel."""
    q1, q2 = pg_queue.queue(), pg_queue.queue()
    async with q1.opened(), q2.opened():
        r1, r2 = Recorder(q1, delay=0.05, worker="a"), Recorder(q2, delay=0.05, worker="b")
        stop = asyncio.Event()
        workers = [
            asyncio.create_task(q.run_worker(Handlers(thread=r), concurrency=8, stop=stop, name=n))
            for q, r, n in ((q1, r1, "a"), (q2, r2, "b"))
        ]
        for round_ in range(6):
            for t in range(10):
                await submit(q1, f"T{t}", f"m{round_}")
            await asyncio.sleep(0.02)
        total = lambda: sum(len(x) for r in (r1, r2) for texts in r.texts.values() for x in texts)  # noqa: E731
        await wait_for(lambda: total() == 60, timeout=30)
        stop.set()
        await asyncio.gather(*workers)
    spans: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for rec in (r1, r2):
        for thread, s in rec.spans.items():
            spans[thread].extend(s)
    per_thread_overlaps = sum(overlaps(s) for s in spans.values())
    all_spans = [s for ss in spans.values() for s in ss]
    parallel = overlaps(all_spans)
    by_worker = {w: sum(1 for s in all_spans if s[2] == w) for w in ("a", "b")}
    print(
        f"turns={len(all_spans)} per-thread overlaps={per_thread_overlaps} "
        f"cross-thread overlaps={parallel} by worker={by_worker}"
    )
    assert per_thread_overlaps == 0
    assert parallel > 0
    for rec in (r1, r2):  # order within a thread is kept
        for thread, texts in rec.texts.items():
            flat = [t for turn in texts for t in turn]
            assert flat == sorted(flat), thread
    assert min(by_worker.values()) > 0


async def test_cancel_stops_a_running_turn_quickly(queue_backend: QueueBackend) -> None:
    queue = queue_backend.queue()

    async def slow(thread: str, job: JobInfo) -> None:
        await asyncio.sleep(30)

    async with queue.opened():
        rec = Recorder(queue, before=slow)
        stop = asyncio.Event()
        worker = asyncio.create_task(queue.run_worker(Handlers(thread=rec), stop=stop))
        await submit(queue, "T1", "long one")
        await asyncio.wait_for(rec.started.wait(), 10)
        [job] = list(await queue.jobs(status="doing"))
        began = time.monotonic()
        assert await queue.cancel(job.id)
        await wait_for(lambda: rec.stopped_jobs == [job.id], timeout=10)
        took = time.monotonic() - began
        stop.set()
        await worker
        row = await queue.job(job.id)
    print(f"cancel took {took * 1000:.0f} ms; job status {row.status if row else None}")
    assert row is not None and row.status == "succeeded"  # stopped: nothing to retry
    assert took < 3.0


async def test_a_retryable_failure_runs_again_and_the_last_attempt_is_flagged(
    queue_backend: QueueBackend,
) -> None:
    queue = queue_backend.queue(max_attempts=3)
    attempts: list[tuple[int, bool]] = []

    async def flaky(thread: str, job: JobInfo) -> None:
        attempts.append((job.attempt, job.final_attempt))
        if not job.final_attempt:
            raise Retryable("redis is down")

    async with queue.opened():
        rec = Recorder(queue, before=flaky)
        stop = asyncio.Event()
        worker = asyncio.create_task(queue.run_worker(Handlers(thread=rec), stop=stop))
        await submit(queue, "T1", "hello")
        await wait_for(lambda: rec.texts["T1"] == [["hello"]], timeout=20)
        stop.set()
        await worker
    print(f"attempts={attempts}")
    assert attempts == [(0, False), (1, False), (2, True)]


async def test_shutdown_hands_unfinished_turns_back(queue_backend: QueueBackend) -> None:
    """A worker told to stop with turns in flight gives them a short drain, then hands
    them back; the next worker answers every one (the embedded restart path included)."""
    first = queue_backend.queue()
    async with first.opened():
        rec = Recorder(first, delay=5.0, worker="first")
        stop = asyncio.Event()
        worker = asyncio.create_task(
            first.run_worker(Handlers(thread=rec), concurrency=20, drain_seconds=0.3, stop=stop)
        )
        for t in range(20):
            await submit(first, f"T{t}", "hi")
        await wait_for(lambda: first.worker_stats().running == 20)
        stop.set()
        await worker
        answered_first = sum(len(v) for v in rec.texts.values())
        if first.durable:
            todo = await first.jobs(status="todo")
            assert len(todo) == 20
    second = queue_backend.queue()
    async with second.opened():
        woken = await second.recover()
        rec2 = Recorder(second, delay=0.01, worker="second")
        stop2 = asyncio.Event()
        worker2 = asyncio.create_task(
            second.run_worker(Handlers(thread=rec2), concurrency=20, stop=stop2)
        )
        await wait_for(lambda: sum(len(v) for v in rec2.texts.values()) == 20)
        stop2.set()
        await worker2
    backlog = await queue_backend.inbox.backlog()
    print(
        f"first answered={answered_first} handed back and answered by second="
        f"{sum(len(v) for v in rec2.texts.values())} woken by recover={woken}"
    )
    assert answered_first == 0
    assert backlog.pending == 0 and backlog.claimed == 0


@pytest.mark.postgres
async def test_a_stalled_workers_job_is_reclaimed_with_its_inbox_rows(
    pg_queue: QueueBackend,
) -> None:
    """A worker that claimed a job and its rows, then stopped sending heartbeats (killed):
    the sweeper of a live worker puts the job back, and the same job id gets the same rows
    (and their placeholder) back."""
    queue = pg_queue.queue(stalled_timeout=1.0, heartbeat=0.3)
    async with queue.opened():
        await submit(queue, "T1", "hello")
        manager = queue.app.job_manager
        dead_worker = await manager.register_worker()
        job = await manager.fetch_job(queues=None, worker_id=dead_worker)
        assert job is not None and job.id is not None
        items = await queue.inbox.claim("T1", job.id)
        await queue.inbox.set_placeholder([i.id for i in items], "111.222")
        rec = Recorder(queue)
        seen: list[str | None] = []

        async def look(thread: str, info: JobInfo) -> None:
            seen.extend(
                i.placeholder_ts for i in await queue.inbox.thread_items(thread, job_id=info.id)
            )

        rec.before = look
        stop = asyncio.Event()
        began = time.monotonic()
        worker = asyncio.create_task(queue.run_worker(Handlers(thread=rec), stop=stop))
        await wait_for(lambda: rec.texts["T1"] == [["hello"]], timeout=20)
        took = time.monotonic() - began
        stop.set()
        await worker
    print(f"re-claimed after {took:.1f} s")
    assert seen == ["111.222"]


async def _follow_up(queue: RunQueue, thread: str, text: str) -> int | None:
    """A newer message in ``thread`` while its turn runs: stored, and its wake-up makes a
    waiting job (same ``queueing_lock`` as the running one, which is not waiting)."""
    await queue.inbox.add(dedupe_key=text, thread_key=thread, user_id="U1", payload={"text": text})
    return await queue.wake(thread)


async def _settled(queue: RunQueue, timeout: float = 10.0) -> list[tuple[int, str]]:
    """The jobs still ``todo`` or ``doing`` once they had ``timeout`` seconds to finish."""
    deadline = time.monotonic() + timeout
    while True:
        left = [(j.id, j.status) for j in await queue.jobs() if j.status in {"todo", "doing"}]
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.1)


@pytest.mark.postgres
async def test_a_retried_turn_with_a_message_waiting_behind_it_answers_both_in_order(
    pg_queue: QueueBackend,
) -> None:
    """A turn fails with Retryable (Redis blipped) while a newer message of its thread
    already has a waiting job. Putting the job back to ``todo`` collides with that waiting
    job's queueing lock; the retry must still happen (it used to fail, leaving the job
    ``doing`` on a live worker and the thread stuck behind it for good). The retried
    attempt answers both messages, in order, in one turn; the waiting job is folded in."""
    queue = pg_queue.queue(max_attempts=3)
    attempts: list[int] = []
    waiting: list[int | None] = []

    async def blip(thread: str, job: JobInfo) -> None:
        attempts.append(job.attempt)
        if job.attempt == 0:
            waiting.append(await _follow_up(queue, thread, "two"))
            raise Retryable("redis is down")

    async with queue.opened():
        rec = Recorder(queue, after_claim=blip)
        stop = asyncio.Event()
        worker = asyncio.create_task(queue.run_worker(Handlers(thread=rec), stop=stop))
        await submit(queue, "T1", "one")
        try:
            await wait_for(lambda: rec.texts["T1"] == [["one", "two"]], timeout=20)
        finally:
            left = await _settled(queue)
            stop.set()
            await worker
    print(f"attempts={attempts} waiting job={waiting} open jobs after={left}")
    assert waiting[0] is not None  # the follow-up did get a waiting job of its own
    assert attempts == [0, 1]
    assert left == []


@pytest.mark.postgres
async def test_a_stalled_job_with_a_message_waiting_behind_it_is_reclaimed(
    pg_queue: QueueBackend,
) -> None:
    """The sweeper's retry of a dead worker's job meets the same waiting job: it is put
    back anyway, and answers its own message and the newer one."""
    queue = pg_queue.queue(stalled_timeout=1.0, heartbeat=0.3)
    async with queue.opened():
        await submit(queue, "T1", "hello")
        manager = queue.app.job_manager
        dead_worker = await manager.register_worker()
        job = await manager.fetch_job(queues=None, worker_id=dead_worker)
        assert job is not None and job.id is not None
        await queue.inbox.claim("T1", job.id)
        assert await _follow_up(queue, "T1", "two") is not None
        rec = Recorder(queue)
        stop = asyncio.Event()
        worker = asyncio.create_task(queue.run_worker(Handlers(thread=rec), stop=stop))
        try:
            await wait_for(lambda: rec.texts["T1"] == [["hello", "two"]], timeout=20)
        finally:
            left = await _settled(queue)
            stop.set()
            await worker
    assert left == []


@pytest.mark.postgres
async def test_a_retried_work_job_keeps_the_job_queued_behind_it(pg_queue: QueueBackend) -> None:
    """Other work sharing a queueing lock is not folded (payloads differ): the retried job
    and the one queued behind it both run."""
    queue = pg_queue.queue(max_attempts=3)
    runs: list[tuple[str, int]] = []

    async def handler(payload: Mapping[str, Any], job: JobInfo) -> None:
        runs.append((str(payload["n"]), job.attempt))
        if payload["n"] == "first" and job.attempt == 0:
            assert (
                await queue.defer("job", {"n": "second"}, lock="L", queueing_lock="Q") is not None
            )
            raise Retryable("redis is down")

    async with queue.opened():
        stop = asyncio.Event()
        worker = asyncio.create_task(queue.run_worker(Handlers(work={"job": handler}), stop=stop))
        await queue.defer("job", {"n": "first"}, lock="L", queueing_lock="Q")
        try:
            await wait_for(lambda: len(runs) == 3, timeout=20)
        finally:
            stop.set()
            await worker
    assert sorted(runs) == [("first", 0), ("first", 1), ("second", 0)]


@pytest.mark.postgres
async def test_a_job_left_doing_under_a_live_worker_with_no_handler_is_put_back(
    pg_queue: QueueBackend,
) -> None:
    """A job whose final status could not be written stays ``doing`` under a worker that
    is alive and heartbeating: the stalled-job sweep never takes it. The orphan sweep
    sees that no handler of this process runs it and puts it back; it is answered."""
    queue = pg_queue.queue(stalled_timeout=60.0, heartbeat=0.3, orphan_after=0.5)
    async with queue.opened():
        await submit(queue, "T1", "hello")
        manager = queue.app.job_manager
        # fetched by a worker of this process whose status write was lost: 'doing', and
        # no handler is running it
        ours = await manager.register_worker()
        job = await manager.fetch_job(queues=None, worker_id=ours)
        assert job is not None and job.id is not None
        rec = Recorder(queue)
        stop = asyncio.Event()
        worker = asyncio.create_task(queue.run_worker(Handlers(thread=rec), stop=stop))
        try:
            await wait_for(lambda: rec.texts["T1"] == [["hello"]], timeout=15)
        finally:
            left = await _settled(queue)
            stop.set()
            await worker
    print(f"orphans put back: {queue.orphans_recovered}")
    assert queue.orphans_recovered == 1
    assert left == []


async def test_prune_forgets_finished_work_past_the_retention(queue_backend: QueueBackend) -> None:
    """Closed rows older than the retention go; recent closed rows and open rows stay
    (however old); old succeeded jobs go too (in the embedded queue as well: it would grow
    by a job per message), failed ones stay."""
    queue = queue_backend.queue()
    async with queue.opened():
        rec = Recorder(queue, delay=0.0)
        stop = asyncio.Event()
        worker = asyncio.create_task(
            queue.run_worker(Handlers(thread=rec), concurrency=2, stop=stop)
        )
        old, recent = await admit(queue, "T:C1:1.0", "old"), await admit(queue, "T:C1:2.0", "new")
        await wait_for(lambda: len(rec.texts) == 2)
        stop.set()
        await worker
        waiting = await admit(queue, "T:C1:3.0", "still waiting")
        assert old is not None and recent is not None and waiting is not None
        async with queue_backend.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE run_inbox SET finished_at = :at, created_at = :at "
                    "WHERE id IN (:old, :waiting)"
                ),
                {
                    "at": datetime.now(UTC) - timedelta(hours=5),
                    "old": old.row_id,
                    "waiting": waiting.row_id,
                },
            )
            if queue_backend.name == "postgres":
                await conn.execute(
                    text(
                        "UPDATE procrastinate_events SET at = now() - interval '5 hours' "
                        "WHERE job_id = :job"
                    ),
                    {"job": old.job_id},
                )
            else:  # the embedded in-memory queue keeps its events in the connector
                for event in queue.app.connector.events[old.job_id]:
                    event["at"] = datetime.now(UTC) - timedelta(hours=5)
        rows, jobs = await queue.prune(older_than=timedelta(hours=3))
        kept = {item.id for item in await queue.inbox.by_job(recent.job_id or 0)}
        left = {j.id for j in await queue.jobs()}
    print(f"pruned rows={rows} jobs pruned={jobs} jobs left={sorted(left)}")
    assert rows == 1
    assert await queue.inbox.get(old.row_id) is None
    assert kept == {recent.row_id}
    assert await queue.inbox.get(waiting.row_id) is not None  # open rows are never pruned
    assert jobs and old.job_id not in left and recent.job_id in left


@pytest.mark.postgres
async def test_the_ack_statement_reads_only_open_inbox_rows(pg_queue: QueueBackend) -> None:
    """The share read on every ack must use the status index, not scan every message ever
    stored (closed rows are nearly the whole table: ``status <> 'done'`` is a sequential
    scan of it, measured at 35 ms per ack with 300,000 closed rows)."""
    queue = pg_queue.queue()
    async with queue.opened():
        await admit(queue, "T:C1:1.0", "hello")
        async with pg_queue.engine.begin() as conn:
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(
                str(row[0])
                for row in await conn.execute(
                    text("EXPLAIN " + str(_ADMIT_SQL.text)),
                    {
                        **new_row(dedupe_key="k", thread_key="T:C1:2.0", user_id="U1", payload={}),
                        "pending": "pending",
                        "claimed": "claimed",
                        "channel_like": "T:C1:%",
                        "weight": 4,
                        "queue": "turns",
                        "task": "switchboard.thread",
                        "args": "{}",
                    },
                )
            )
    print(plan)
    assert "Seq Scan on run_inbox" not in plan
    assert "ix_run_inbox_status_created_at" in plan or "ix_run_inbox_thread_key_status" in plan


async def _run_jobs(queue: RunQueue, count: int) -> list[str]:
    """Run a worker until ``count`` ``job`` jobs ran; their ``n``, in the order they ran."""
    runs: list[str] = []

    async def handler(payload: Mapping[str, Any], job: JobInfo) -> None:
        runs.append(str(payload["n"]))

    stop = asyncio.Event()
    worker = asyncio.create_task(queue.run_worker(Handlers(work={"job": handler}), stop=stop))
    try:
        await wait_for(lambda: len(runs) == count, timeout=20)
    finally:
        stop.set()
        await worker
    return runs


async def test_a_job_parked_until_later_is_not_counted_as_backlog(
    queue_backend: QueueBackend,
) -> None:
    """A job due later (an answer waiting out Slack's Retry-After, a retry's backoff) is
    ``scheduled``, not ``depth``: KEDA scales on depth, and more workers cannot help it.
    Of jobs sharing a lock, the one of higher priority runs first."""
    queue = queue_backend.queue()
    async with queue.opened():
        await queue.defer("job", {"n": "later"}, delay=timedelta(seconds=600))
        await queue.defer("job", {"n": "now"})
        work = next(s for s in await queue.stats() if s.queue == "work")
        assert (work.depth, work.scheduled) == (1, 1)
        await queue.defer("job", {"n": "low"}, lock="L")
        await queue.defer("job", {"n": "high"}, lock="L", priority=1)
        runs = await _run_jobs(queue, 3)
        work = next(s for s in await queue.stats() if s.queue == "work")
    assert (work.depth, work.scheduled) == (0, 1)
    assert runs.index("high") < runs.index("low") and "later" not in runs


async def test_a_locks_job_waits_behind_an_earlier_one_not_due_yet(
    queue_backend: QueueBackend,
) -> None:
    """Jobs sharing a lock run in the order they were queued, even when the earlier one is
    not due yet (a thread's answer waiting out Slack's Retry-After holds back that thread's
    next answer); other locks are not held. PostgreSQL's fetch did this already; the
    embedded in-memory queue ran the later job first."""
    queue = queue_backend.queue()
    async with queue.opened():
        await queue.defer("job", {"n": "first"}, lock="L", delay=timedelta(seconds=2))
        await queue.defer("job", {"n": "second"}, lock="L")
        await queue.defer("job", {"n": "other"}, lock="M")
        runs = await _run_jobs(queue, 3)
    assert runs == ["other", "first", "second"]


async def test_a_job_held_behind_a_parked_one_of_its_lock_is_not_backlog(
    queue_backend: QueueBackend,
) -> None:
    """A thread's next delivery, due now, waits behind the thread's earlier one that waits
    out Slack's Retry-After (re-queued at a higher priority): it cannot run either, so it
    is ``scheduled``, not depth (KEDA and the backlog alert read depth and its age)."""
    queue = queue_backend.queue()
    async with queue.opened():
        await queue.defer("job", {"n": 1}, lock="T", delay=timedelta(seconds=600), priority=1)
        await queue.defer("job", {"n": 2}, lock="T")
        await queue.defer("job", {"n": 3}, lock="other")
        work = next(s for s in await queue.stats() if s.queue == "work")
    assert (work.depth, work.scheduled) == (1, 2)
