"""The run queue: Procrastinate jobs that wake a thread, or run one piece of work.

Two tasks, both calling handlers injected when a worker starts (storage knows no Slack):

* ``switchboard.thread`` — "answer what thread K has waiting in the inbox". Every job of a
  thread has ``lock=K`` (Procrastinate runs jobs sharing a lock one at a time, in order,
  enforced in SQL, across every worker) and ``queueing_lock=K`` (at most one *waiting* job
  per thread: a message arriving while one waits is simply folded into it — the waiting
  job will find it in the inbox).
* ``switchboard.work`` — one unit of other work (a scheduled firing, an approval resume),
  dispatched by ``kind`` to its handler, with an optional lock of its own.

Crashes and shutdowns:

* a SIGKILLed worker stops sending heartbeats; every worker runs a *stalled-job sweeper*
  that puts the dead worker's jobs back to ``todo`` after ``stalled_timeout`` seconds, and
  the same job id is re-claimed (the inbox then hands it its own rows back);
* on SIGTERM the supervisor stops fetching, waits ``drain_seconds`` for jobs in flight and
  cancels the rest; a cancelled job raises :class:`HandBack`, which the retry strategy
  turns into an immediate retry on another worker — nothing is lost;
* a handler that raises :class:`Retryable` (Redis or SQL briefly down) is retried with a
  backoff; the handler is told when it runs its last attempt, to give up with a message;
  a thread job put back while a newer message of its thread already has a waiting job
  absorbs that job (:class:`_RetryingJobManager`): the retry answers both, in order;
* an operator's or user's cancel (``cancel``) aborts the job: the handler's ``stopped``
  is called and the job ends as succeeded (nothing to retry).

The embedded default has no PostgreSQL: the queue is Procrastinate's in-memory connector
(in-process), and durability comes from the SQL inbox, replayed at start-up
(:meth:`RunQueue.recover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from procrastinate import App, BaseRetryStrategy, JobContext, RetryDecision
from procrastinate import exceptions as pexc
from procrastinate.job_context import AbortReason
from procrastinate.jobs import Job
from procrastinate.manager import QUEUEING_LOCK_CONSTRAINT, JobManager
from procrastinate.testing import InMemoryConnector
from sqlalchemy import bindparam, text

from storage.errors import StorageError
from storage.models import UTCDateTime
from storage.runqueue._connector import OrderedMemoryConnector, PatientConnector, fetch_rank
from storage.runqueue.inbox import (
    CHANNEL_SHARE_WEIGHT,
    CLAIMED,
    PENDING,
    Admitted,
    InboxStore,
    Share,
    channel_pattern,
    new_row,
)
from storage.runqueue.schema import libpq_dsn
from storage.transient import is_transient

log = logging.getLogger(f"switchboard.{__name__}")

THREAD_TASK = "switchboard.thread"
WORK_TASK = "switchboard.work"
TURNS = "turns"  # queue of thread jobs
WORK = "work"  # queue of other jobs

# RunQueue.admit on PostgreSQL: the inbox row, the sender's and channel's share, and the
# thread's job in one statement. The job row is what Procrastinate's own
# procrastinate_defer_jobs_v1 inserts (its schema is pinned with the engine, and
# tests/runqueue checks a worker runs the job); ON CONFLICT on the partial unique index of
# waiting jobs is "a job is already waiting for this thread": the message folds into it,
# where Procrastinate's defer would raise AlreadyEnqueued. Its insert trigger notifies the
# workers as for a deferred job. The share is read from the snapshot before the insert,
# and counts other threads only, as InboxStore.admit does.
_ADMIT_SQL = text(
    """
    WITH new AS (
        INSERT INTO run_inbox (id, dedupe_key, thread_key, user_id, payload, status,
                               attempts, placeholder_ts, created_at)
        VALUES (:id, :dedupe_key, :thread_key, :user_id, :payload, :status,
                :attempts, :placeholder_ts, :created_at)
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING id
    ), share AS (
        SELECT count(DISTINCT thread_key) FILTER (WHERE user_id = :user_id) AS user_threads,
               count(DISTINCT thread_key)
                   FILTER (WHERE thread_key LIKE :channel_like ESCAPE '/') AS channel
        FROM run_inbox
        WHERE status IN (:pending, :claimed) AND thread_key <> :thread_key
    ), job AS (
        INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, queueing_lock,
                                        args)
        SELECT :queue, :task, CAST(-(share.user_threads + share.channel / :weight) AS integer),
               :thread_key, :thread_key, CAST(:args AS jsonb)
        FROM share
        WHERE EXISTS (SELECT 1 FROM new)
        ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING
        RETURNING id
    )
    SELECT (SELECT id FROM new) AS row_id, share.user_threads, share.channel,
           (SELECT id FROM job) AS job_id
    FROM share
    """
).bindparams(bindparam("created_at", type_=UTCDateTime()))


class QueueError(StorageError):
    """Base class of run-queue failures."""


class QueueUnavailable(QueueError):
    """The queue could not take a job in time (PostgreSQL down or too slow)."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"the run queue is unavailable: {detail}")


class Retryable(Exception):
    """Raised by a handler: a dependency is briefly down; run this job again later."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class HandBack(Exception):
    """A job cancelled by its worker's shutdown: run it again, elsewhere, at once."""

    def __init__(self, job_id: int | None) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} handed back at shutdown")


class Superseded(Exception):
    """Raised by a handler that finds it lost its job: the stalled-job sweeper gave the job
    to another worker while this one was starved or paused. It must not post anything."""

    def __init__(self, job_id: int, attempt: int) -> None:
        self.job_id = job_id
        self.attempt = attempt
        super().__init__(f"job {job_id} attempt {attempt} was re-claimed by another worker")


@dataclass(frozen=True, slots=True)
class JobInfo:
    """What a handler learns about the job it runs.

    :meth:`holds` is the fencing check: call it right before anything people see (a post,
    an update). A worker that stopped sending heartbeats (SIGSTOP, a starved CPU) may find
    its job retried by the sweeper and running elsewhere when it wakes up.
    """

    id: int
    attempt: int  # 0 the first time
    final_attempt: bool  # a Retryable now would not be retried: give up with a message
    deferred_at: float | None = None  # epoch seconds, when known
    fence: Callable[[JobInfo], Awaitable[bool]] | None = field(
        default=None, compare=False, repr=False
    )

    async def holds(self) -> bool:
        """True while this attempt still owns the job (no fence: always)."""
        return True if self.fence is None else await self.fence(self)

    async def check(self) -> None:
        """Raise :class:`Superseded` when this attempt no longer owns the job."""
        if not await self.holds():
            raise Superseded(self.id, self.attempt)


class ThreadHandler(Protocol):
    """Answers a thread's waiting messages (the bot implements it)."""

    async def run(self, thread_key: str, job: JobInfo) -> None: ...

    async def stopped(self, thread_key: str, job: JobInfo) -> None: ...


WorkHandler = Callable[[Mapping[str, Any], JobInfo], Awaitable[None]]


@dataclass
class Handlers:
    """What a worker runs: the thread handler and one handler per kind of other work."""

    thread: ThreadHandler | None = None
    work: dict[str, WorkHandler] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    depth: int  # jobs waiting and due (todo)
    running: int  # jobs being run (doing)
    oldest_age: float  # seconds the oldest waiting job has waited since it was due
    #: jobs parked until later (a retry's backoff, an answer waiting out Slack's
    #: Retry-After): not a backlog, so not in ``depth`` (KEDA scales on that)
    scheduled: int = 0


@dataclass(frozen=True, slots=True)
class JobRow:
    """A job as operators see it (``switchboard runs list``)."""

    id: int
    queue: str
    task: str
    status: str
    lock: str | None
    args: Mapping[str, Any]
    attempts: int


class _Strategy(BaseRetryStrategy):
    """Retry :class:`HandBack` at once, :class:`Retryable` with a capped backoff."""

    def __init__(self, *, max_attempts: int, backoff: float, backoff_cap: float) -> None:
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.backoff_cap = backoff_cap

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, HandBack):
            return RetryDecision(retry_in={"seconds": 0})
        if isinstance(exception, Retryable) and job.attempts + 1 < self.max_attempts:
            wait = min(self.backoff_cap, self.backoff * (2**job.attempts))
            return RetryDecision(retry_in={"seconds": int(max(1, wait))})
        return None


class _RetryingJobManager(JobManager):
    """Procrastinate's job manager, with a retry that cannot collide with a waiting job.

    Putting a job back to ``todo`` (a :class:`Retryable` or :class:`HandBack`, and the
    stalled-job sweeper) keeps its ``queueing_lock``, and PostgreSQL allows one ``todo`` job
    per queueing lock. A thread's job is ``doing`` while its turn runs, so a wake-up for
    that thread meanwhile (a newer message, the maintenance loop, another worker's
    start-up ``recover``) queues a second job under the same lock. Procrastinate's retry
    then fails with a unique violation that nobody handles: the job stays ``doing`` under a
    worker that is alive and heartbeating, no sweeper ever takes it back, and the waiting
    job sits behind it (same ``lock``) for good - the thread is never answered.

    On that collision a thread job absorbs the waiting one (deleted while still ``todo``;
    it cannot have started, the running job holds the thread's ``lock``): the retried
    attempt claims its own rows back and every message still waiting, so the thread's
    messages are answered once and in order, with the retry's backoff and attempt count.
    Other work is not folded (payloads differ): the retried job gives up its queueing lock
    and both run. Only the PostgreSQL connector enforces queueing locks on retry.
    """

    #: Collisions in a row before the retried job just drops its queueing lock (a wake-up
    #: can slip in between folding the waiting job and the retry).
    FOLD_TRIES = 3

    def __init__(self, connector: Any) -> None:
        super().__init__(connector=connector)
        #: The Procrastinate workers this process registered (one at a time; a restarted
        #: worker gets a new id): the orphan sweep looks for their jobs.
        self.worker_ids: set[int] = set()

    async def register_worker(self) -> int:
        worker_id = await super().register_worker()
        self.worker_ids.add(worker_id)
        return worker_id

    async def retry_job_by_id_async(
        self,
        job_id: int,
        retry_at: datetime,
        priority: int | None = None,
        queue: str | None = None,
        lock: str | None = None,
    ) -> None:
        for _ in range(self.FOLD_TRIES):
            try:
                await super().retry_job_by_id_async(job_id, retry_at, priority, queue, lock)
                return
            except pexc.UniqueViolation as exc:
                if exc.constraint_name != QUEUEING_LOCK_CONSTRAINT:
                    raise
                if not await self._fold_waiting(job_id, exc.queueing_lock):
                    break
        await self.connector.execute_query_async(
            query="UPDATE procrastinate_jobs SET queueing_lock = NULL "
            "WHERE id = %(job_id)s AND status IN ('doing', 'failed')",
            job_id=job_id,
        )
        log.info("job %s retried without its queueing lock", job_id, extra={"job_id": job_id})
        await super().retry_job_by_id_async(job_id, retry_at, priority, queue, lock)

    async def _fold_waiting(self, job_id: int, queueing_lock: str | None) -> bool:
        """Delete the waiting thread job that shares ``job_id``'s queueing lock; False when
        ``job_id`` is not a thread job (or nothing was waiting any more)."""
        rows = await self.connector.execute_query_all_async(
            query="SELECT procrastinate_cancel_job_v1(waiting.id, false, true) AS id "
            "FROM procrastinate_jobs AS retried "
            "JOIN procrastinate_jobs AS waiting ON waiting.queueing_lock = retried.queueing_lock "
            "WHERE retried.id = %(job_id)s AND retried.task_name = %(task)s "
            "AND waiting.status = 'todo' AND waiting.id <> retried.id",
            job_id=job_id,
            task=THREAD_TASK,
        )
        folded = [int(row["id"]) for row in rows if row["id"] is not None]
        if folded:
            log.info(
                "waiting job %s of its thread folded into job %s, which is retried",
                folded,
                job_id,
                extra={"job_id": job_id, "lock": queueing_lock},
            )
        return bool(folded)


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """Counters a worker keeps for its metrics (read by the bot's Prometheus view)."""

    running: int
    started: int
    retries: int
    dead: int
    superseded: int = 0  # attempts that found their job re-claimed and posted nothing


class RunQueue:
    """The queue one process uses: defers jobs, and runs workers over them.

    ``database_url`` picks the connector: PostgreSQL gets Procrastinate's psycopg
    connector (shared by every process of the deployment), anything else the in-memory
    connector (this process only: the embedded default).
    """

    def __init__(
        self,
        *,
        database_url: str,
        inbox: InboxStore,
        defer_timeout: float = 2.0,
        heartbeat: float = 2.0,
        stalled_timeout: float = 10.0,
        fetch_poll: float = 1.0,
        abort_poll: float = 1.0,
        max_attempts: int = 6,
        backoff: float = 2.0,
        backoff_cap: float = 30.0,
        pool_size: int = 10,
        db_patience: float = 30.0,
        orphan_after: float | None = None,
    ) -> None:
        self.inbox = inbox
        self.durable = database_url.startswith(("postgresql", "postgres"))
        self.max_attempts = max_attempts
        self._defer_timeout = defer_timeout
        self._heartbeat = heartbeat
        self._stalled_timeout = stalled_timeout
        self._fetch_poll = fetch_poll
        self._abort_poll = abort_poll
        self._handlers = Handlers()
        self._running = 0
        self._started = 0
        self._retries = 0
        self._dead = 0
        #: How often the Procrastinate worker had to be started again (store went away).
        self.worker_restarts = 0
        self._superseded = 0
        #: Jobs whose handler runs in this process now (the orphan sweep skips them).
        self._in_hand: set[int] = set()
        #: Orphans seen, with when first seen (monotonic seconds).
        self._orphans: dict[int, float] = {}
        # Longer than the connector's patience with a status write, twice over: a job
        # whose final status is still being written is not an orphan.
        self._orphan_after = orphan_after if orphan_after is not None else 2 * db_patience + 30
        self.orphans_recovered = 0
        self._start_latency: list[float] = []
        self.on_start: Callable[[float], None] | None = None  # claim-to-start seconds
        if self.durable:
            connector: Any = PatientConnector(
                patience=db_patience,
                conninfo=libpq_dsn(database_url),
                min_size=1,
                max_size=pool_size,
                kwargs={"connect_timeout": 5},
            )
        else:
            connector = OrderedMemoryConnector()
        self.app = App(connector=connector)
        # Retries that survive a waiting job of the same thread (see _RetryingJobManager).
        self.app.job_manager = _RetryingJobManager(connector=connector)
        strategy = _Strategy(max_attempts=max_attempts, backoff=backoff, backoff_cap=backoff_cap)

        @self.app.task(name=THREAD_TASK, queue=TURNS, pass_context=True, retry=strategy)
        async def thread_task(context: JobContext, thread: str, at: float = 0.0) -> None:
            await self._run_thread(context, thread, at)

        @self.app.task(name=WORK_TASK, queue=WORK, pass_context=True, retry=strategy)
        async def work_task(
            context: JobContext, kind: str, payload: dict[str, Any], at: float = 0.0
        ) -> None:
            await self._run_work(context, kind, payload, at)

        self._thread_task = thread_task
        self._work_task = work_task

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        await self.app.open_async()

    async def close(self) -> None:
        await self.app.close_async()

    @contextlib.asynccontextmanager
    async def opened(self) -> Any:
        await self.open()
        try:
            yield self
        finally:
            await self.close()

    # -- deferring ----------------------------------------------------------------------

    async def admit(
        self,
        *,
        dedupe_key: str,
        thread_key: str,
        user_id: str,
        payload: Mapping[str, Any],
        placeholder_ts: str | None = None,
    ) -> Admitted | None:
        """Store a message in the inbox and wake its thread, at the fair priority of what
        its sender and channel already have queued (:attr:`Share.priority`); None when
        ``dedupe_key`` was stored before (nothing is woken then).

        On PostgreSQL this is ONE statement (:data:`_ADMIT_SQL`), committed on its own: the
        message and its thread's job are stored together or not at all, and the receiver's
        ack path makes one round trip instead of five (``BEGIN``, insert, share, ``COMMIT``,
        and Procrastinate's defer on its own connection). The embedded default stores the
        row, then wakes the in-memory queue; a wake that fails there is logged and left to
        the maintenance loop (the stored row is the acknowledgement)."""
        message: dict[str, Any] = {
            "dedupe_key": dedupe_key,
            "thread_key": thread_key,
            "user_id": user_id,
            "payload": payload,
            "placeholder_ts": placeholder_ts,
        }
        statements = self.inbox.statements
        if not (self.durable and statements.postgres):
            admitted = await self.inbox.admit(**message)
            if admitted is None:
                return None
            job_id = await self.wake_soon(thread_key, priority=admitted.share.priority)
            return replace(admitted, job_id=job_id)
        row = new_row(**message)
        params = {
            **row,
            "pending": PENDING,
            "claimed": CLAIMED,
            "channel_like": channel_pattern(thread_key),
            "weight": CHANNEL_SHARE_WEIGHT,
            "queue": TURNS,
            "task": THREAD_TASK,
            "args": json.dumps({"thread": thread_key, "at": time.time()}),
        }
        result = await statements.fetch(_ADMIT_SQL, params, lambda rows: rows.one())
        if result.row_id is None:
            return None
        share = Share(user_threads=int(result.user_threads), channel_threads=int(result.channel))
        return Admitted(row_id=str(result.row_id), share=share, job_id=result.job_id)

    async def wake(self, thread_key: str, *, priority: int = 0) -> int | None:
        """Make sure a job will answer ``thread_key``'s waiting messages; the new job's id,
        or None when a job was already waiting (the message is folded into it).

        Free workers take the highest ``priority`` first, then the oldest job."""
        deferrer = self._thread_task.configure(
            lock=thread_key, queueing_lock=thread_key, priority=priority
        )
        try:
            return await asyncio.wait_for(
                deferrer.defer_async(thread=thread_key, at=time.time()), self._defer_timeout
            )
        except pexc.AlreadyEnqueued:
            return None
        except (TimeoutError, pexc.ConnectorException, OSError) as exc:
            raise QueueUnavailable(type(exc).__name__) from exc

    async def wake_soon(self, thread_key: str, *, priority: int = 0) -> int | None:
        """:meth:`wake` for a thread whose message is already stored: a queue that cannot
        take the job now is logged, not raised (None) - the stored row is the
        acknowledgement, and the maintenance loop wakes threads whose messages wait."""
        try:
            return await self.wake(thread_key, priority=priority)
        except QueueUnavailable as exc:
            log.warning("queue wake deferred for %s: %s", thread_key, exc)
            return None

    async def defer(
        self,
        kind: str,
        payload: Mapping[str, Any],
        *,
        lock: str | None = None,
        queueing_lock: str | None = None,
        delay: timedelta | None = None,
        priority: int = 0,
    ) -> int | None:
        """Queue one piece of work for the handler of ``kind``; None when
        ``queueing_lock`` already has a waiting job. Of the jobs sharing ``lock``, one of
        a higher ``priority`` runs first (and holds the others back while it waits)."""
        # A lock of its own for a job without one: it waits on no other job, on both connectors.
        options: dict[str, Any] = {"lock": lock or f"{kind}:{time.time_ns()}"}
        if queueing_lock is not None:
            options["queueing_lock"] = queueing_lock
        if delay is not None:
            options["schedule_in"] = {"seconds": max(0, int(delay.total_seconds()))}
        if priority:
            options["priority"] = priority
        deferrer = self._work_task.configure(**options)
        try:
            return await asyncio.wait_for(
                deferrer.defer_async(kind=kind, payload=dict(payload), at=time.time()),
                self._defer_timeout,
            )
        except pexc.AlreadyEnqueued:
            return None
        except (TimeoutError, pexc.ConnectorException, OSError) as exc:
            raise QueueUnavailable(type(exc).__name__) from exc

    async def recover(self, *, older_than: timedelta = timedelta(0)) -> int:
        """Wake every thread with messages still waiting in the inbox; the embedded queue
        first puts back what its previous process had claimed. Returns threads woken."""
        if not self.durable:
            await self.inbox.release_all()
        threads = await self.inbox.waiting_threads(older_than=older_than)
        for thread in threads:
            await self.wake(thread)
        return len(threads)

    async def prune(self, *, older_than: timedelta) -> tuple[int, bool]:
        """Forget finished work older than ``older_than``: closed inbox rows, and the
        succeeded and cancelled jobs (Procrastinate's ``delete_old_jobs``; failed jobs stay
        for ``runs list --status failed`` and ``runs retry``), in the embedded in-memory
        queue too, which otherwise grows by a job per message and scans them all at each
        fetch. Returns the inbox rows deleted, and whether the jobs were pruned too."""
        rows = await self.inbox.prune(older_than=older_than)
        await self.app.job_manager.delete_old_jobs(
            nb_hours=max(1, int(older_than.total_seconds() // 3600)),
            include_cancelled=True,
            include_aborted=True,
        )
        return rows, True

    # -- operators ----------------------------------------------------------------------

    async def cancel(self, job_id: int) -> bool:
        """Cancel a waiting job, or ask a running one to stop; False when it is done."""
        return await self.app.job_manager.cancel_job_by_id_async(job_id, abort=True)

    async def retry(self, job_id: int) -> None:
        """Run a failed (or cancelled) job again now."""
        await self.app.job_manager.retry_job_by_id_async(job_id=job_id, retry_at=datetime.now(UTC))

    async def jobs(self, *, status: str | None = None, limit: int = 50) -> list[JobRow]:
        rows = await self.app.job_manager.list_jobs_async(status=status)
        result = [
            JobRow(
                id=int(job.id or 0),
                queue=job.queue,
                task=job.task_name,
                status=str(job.status),
                lock=job.lock,
                args=job.task_kwargs,
                attempts=job.attempts,
            )
            for job in rows
        ]
        result.sort(key=lambda row: row.id, reverse=True)
        return result[:limit]

    async def job(self, job_id: int) -> JobRow | None:
        rows = await self.app.job_manager.list_jobs_async(id=job_id)
        for job in rows:
            return JobRow(
                id=int(job.id or 0),
                queue=job.queue,
                task=job.task_name,
                status=str(job.status),
                lock=job.lock,
                args=job.task_kwargs,
                attempts=job.attempts,
            )
        return None

    async def stats(self) -> list[QueueStats]:
        """Depth, running and oldest wait per queue (for ``/metrics`` and ``/readyz``).

        A job not due yet is ``scheduled``, not depth, and so is one its lock holds back
        behind such a job (a thread's next delivery behind one waiting out Slack's
        ``Retry-After``): more workers cannot run either, so neither may scale them out or
        raise the backlog alert."""
        connector = self.app.connector
        if isinstance(connector, InMemoryConnector):
            return self._memory_stats(connector)
        rows = await connector.execute_query_all_async(
            query="""
            WITH parked_heads AS (
                -- per lock, the first (in the fetch's order) of its jobs not due yet
                SELECT DISTINCT ON (lock) lock, priority, id
                  FROM procrastinate_jobs
                 WHERE status = 'todo' AND scheduled_at > now() AND lock IS NOT NULL
                 ORDER BY lock, priority DESC, id
            )
            SELECT q.queue_name,
                   count(*) FILTER (WHERE j.status = 'todo' AND NOT parked) AS depth,
                   count(*) FILTER (WHERE j.status = 'doing') AS running,
                   count(*) FILTER (WHERE j.status = 'todo' AND parked) AS scheduled,
                   COALESCE(EXTRACT(EPOCH FROM now() - min(GREATEST(e.at, j.scheduled_at))
                            FILTER (WHERE j.status = 'todo' AND NOT parked)), 0) AS oldest
              FROM (VALUES ('turns'), ('work')) AS q(queue_name)
              LEFT JOIN procrastinate_jobs j
                     ON j.queue_name = q.queue_name AND j.status IN ('todo', 'doing')
              LEFT JOIN procrastinate_events e
                     ON e.job_id = j.id AND e.type = 'deferred'
              LEFT JOIN parked_heads h ON h.lock = j.lock
              -- parked: not due yet, or held behind a job of its lock that is not (the
              -- fetch's order: higher priority, or the same and queued first)
              LEFT JOIN LATERAL (
                  SELECT COALESCE(j.scheduled_at > now(), false)
                         OR COALESCE(h.priority > j.priority
                                     OR (h.priority = j.priority AND h.id < j.id), false)
                         AS parked
              ) p ON true
             GROUP BY q.queue_name
            """
        )
        return [
            QueueStats(
                queue=str(row["queue_name"]),
                depth=int(row["depth"]),
                running=int(row["running"]),
                oldest_age=float(row["oldest"] or 0.0),
                scheduled=int(row["scheduled"]),
            )
            for row in rows
        ]

    @staticmethod
    def _memory_stats(connector: InMemoryConnector) -> list[QueueStats]:
        now = datetime.now(UTC)
        out = []
        later = [
            j for j in connector.jobs.values() if _not_due(j, now)
        ]  # all queues: locks span them
        for queue in (TURNS, WORK):
            waiting = [
                j
                for j in connector.jobs.values()
                if j["queue_name"] == queue and j["status"] == "todo"
            ]
            parked = [j for j in waiting if _not_due(j, now) or _behind(j, later)]
            parked_ids = {j["id"] for j in parked}
            todo = [j for j in waiting if j["id"] not in parked_ids]
            doing = [
                j
                for j in connector.jobs.values()
                if j["queue_name"] == queue and j["status"] == "doing"
            ]
            ages = [
                (now - max(e["at"], j["scheduled_at"] or e["at"])).total_seconds()
                for j in todo
                for e in connector.events.get(j["id"], [])
                if e["type"] == "deferred"
            ]
            out.append(
                QueueStats(queue, len(todo), len(doing), max(ages, default=0.0), len(parked))
            )
        return out

    async def holds(self, job: JobInfo) -> bool:
        """Fencing by attempt: True while ``job``'s row is ``doing`` at the attempt the
        handler was given. The sweeper's retry bumps ``attempts``, so a worker that lost
        its job (it stopped heartbeating but is alive) sees False. The in-memory queue has
        no sweeper: always True. A store that cannot answer counts as True (the turn is
        not dropped for a blip; the window is the rest of this attempt)."""
        if not self.durable:
            return True
        try:
            row = await self.app.connector.execute_query_one_async(
                query="SELECT status::text AS status, attempts FROM procrastinate_jobs "
                "WHERE id = %(id)s",
                id=job.id,
            )
        except (pexc.ConnectorException, OSError) as exc:
            log.warning("fencing check of job %s failed: %s", job.id, exc)
            return True
        return str(row["status"]) == "doing" and int(row["attempts"]) == job.attempt

    async def _wait_settled(self, job: JobInfo, *, timeout: float = 900.0) -> None:
        """A superseded attempt waits until the attempt that replaced it has ended: were it
        to return now, Procrastinate would mark the job finished under the other worker
        (its ``finish_job`` accepts a ``todo``/``doing`` row), and a retried job not yet
        fetched again would be lost."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                row = await self.app.connector.execute_query_one_async(
                    query="SELECT status::text AS status FROM procrastinate_jobs WHERE id = %(id)s",
                    id=job.id,
                )
                if str(row["status"]) not in {"todo", "doing"}:
                    return
            except (pexc.ConnectorException, OSError) as exc:
                log.debug("waiting for job %s to settle: %s", job.id, exc)
            await asyncio.sleep(max(self._heartbeat, 0.2))
        log.error("superseded job %s did not settle in %.0f s", job.id, timeout)

    async def ping(self) -> bool:
        """The queue's store answers (``/readyz``)."""
        return await self.app.check_connection_async()

    def worker_stats(self) -> WorkerStats:
        return WorkerStats(
            running=self._running,
            started=self._started,
            retries=self._retries,
            dead=self._dead,
            superseded=self._superseded,
        )

    # -- workers ------------------------------------------------------------------------

    async def run_worker(
        self,
        handlers: Handlers,
        *,
        concurrency: int = 64,
        drain_seconds: float = 30.0,
        name: str = "worker",
        stop: asyncio.Event | None = None,
        queues: list[str] | None = None,
    ) -> None:
        """Run jobs until ``stop`` is set (or the task is cancelled); then stop fetching,
        give jobs in flight ``drain_seconds`` and hand the rest back to the queue.

        Procrastinate's worker ends by itself when its database goes away (a failed fetch,
        or a failed heartbeat, which stops it): this loop starts it again, with a capped
        backoff, so a PostgreSQL restart does not leave a process that no longer works."""
        self._handlers = handlers
        stop = stop or asyncio.Event()
        sweeper = asyncio.create_task(self._sweep_stalled(), name="stalled-sweeper")
        failures = 0
        try:
            while not stop.is_set():
                started = time.monotonic()
                ended = await self._run_procrastinate(
                    concurrency=concurrency,
                    drain_seconds=drain_seconds,
                    name=name,
                    stop=stop,
                    queues=queues,
                )
                if stop.is_set():
                    break
                if time.monotonic() - started > 60:
                    failures = 0  # it had been working: start over quickly
                failures += 1
                self.worker_restarts += 1
                delay = min(10.0, 0.5 * 2 ** (failures - 1))
                log.warning(
                    "queue worker stopped (%s); starting it again in %.1f s",
                    ended,
                    delay,
                    extra={"restarts": self.worker_restarts},
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    async def _run_procrastinate(
        self,
        *,
        concurrency: int,
        drain_seconds: float,
        name: str,
        stop: asyncio.Event,
        queues: list[str] | None,
    ) -> str:
        """One run of Procrastinate's worker, until ``stop`` or until it ends by itself;
        why it ended (for the log)."""
        worker = asyncio.create_task(
            self.app.run_worker_async(
                queues=cast(Any, queues),  # None: every queue (the stub says Iterable only)
                name=name,
                concurrency=concurrency,
                install_signal_handlers=False,
                update_heartbeat_interval=self._heartbeat,
                stalled_worker_timeout=self._stalled_timeout,
                shutdown_graceful_timeout=drain_seconds,
                fetch_job_polling_interval=self._fetch_poll,
                abort_job_polling_interval=self._abort_poll,
                listen_notify=True,
            ),
            name=f"procrastinate-{name}",
        )
        stopper = asyncio.create_task(stop.wait(), name="worker-stop")
        try:
            await asyncio.wait({worker, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not worker.done():
                worker.cancel()  # Procrastinate's graceful stop: no new fetches, then drain
            try:
                await worker
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # we are being cancelled ourselves
            except (pexc.ConnectorException, OSError) as exc:
                if stop.is_set():
                    log.warning("queue worker ended with %s while stopping", type(exc).__name__)
                else:
                    return f"{type(exc).__name__}: {exc.__cause__ or exc}"
        return "stopped" if stop.is_set() else "its side task failed"

    async def _sweep_stalled(self) -> None:
        """Put jobs of workers that stopped sending heartbeats back to ``todo``."""
        if not self.durable:
            return
        manager = self.app.job_manager
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                stalled = await manager.get_stalled_jobs(
                    seconds_since_heartbeat=self._stalled_timeout
                )
                for job in stalled:
                    try:
                        await manager.retry_job(job)
                    except pexc.ConnectorException as exc:  # another sweeper got it first
                        log.debug("stalled job %s not retried: %s", job.id, exc)
                        continue
                    self._retries += 1
                    log.warning(
                        "job %s of a stalled worker put back in the queue",
                        job.id,
                        extra={"job_id": job.id, "lock": job.lock},
                    )
            except (pexc.ConnectorException, OSError) as exc:
                log.warning("stalled-job sweep failed: %s", exc)
            try:
                await self.sweep_orphans()
            except (pexc.ConnectorException, OSError) as exc:
                log.warning("orphaned-job sweep failed: %s", exc)

    async def sweep_orphans(self) -> list[int]:
        """Put back jobs left ``doing`` under this process's live worker with no handler
        running: their final status could not be written (Procrastinate logs the error
        and carries on), so the worker keeps heartbeating, the stalled-job sweep never
        takes them, and their thread would wait behind them for good. A job is put back
        once it has looked orphaned for ``orphan_after`` seconds (longer than a status
        write may take while the database comes back). Returns the jobs put back."""
        manager = self.app.job_manager
        ids = sorted(getattr(manager, "worker_ids", ()))
        if not self.durable or not ids:
            return []
        rows = await self.app.connector.execute_query_all_async(
            query="SELECT id FROM procrastinate_jobs "
            "WHERE status = 'doing' AND worker_id = ANY(%(ids)s)",
            ids=ids,
        )
        now = time.monotonic()
        doing = {int(row["id"]) for row in rows}
        self._orphans = {job_id: self._orphans.get(job_id, now) for job_id in doing - self._in_hand}
        recovered = []
        for job_id, since in list(self._orphans.items()):
            if now - since < self._orphan_after:
                continue
            del self._orphans[job_id]
            try:
                await manager.retry_job_by_id_async(job_id, retry_at=datetime.now(UTC))
            except pexc.ConnectorException as exc:  # the stalled-job sweep got it first
                log.debug("orphaned job %s not retried: %s", job_id, exc)
                continue
            self.orphans_recovered += 1
            self._retries += 1
            recovered.append(job_id)
            log.warning(
                "job %s was left 'doing' after its handler ended; put back in the queue",
                job_id,
                extra={"job_id": job_id},
            )
        return recovered

    def _info(self, context: JobContext, at: float) -> JobInfo:
        job = context.job
        return JobInfo(
            id=int(job.id or 0),
            attempt=job.attempts,
            final_attempt=job.attempts + 1 >= self.max_attempts,
            deferred_at=at or None,
            fence=self.holds if self.durable else None,
        )

    async def _guard(
        self,
        context: JobContext,
        info: JobInfo,
        run: Callable[[], Awaitable[None]],
        stopped: Callable[[], Awaitable[None]],
    ) -> None:
        self._running += 1
        self._started += 1
        job = context.job
        self._in_hand.add(info.id)
        if self.on_start is not None and info.deferred_at and info.attempt == 0:
            self.on_start(max(0.0, context.start_timestamp - info.deferred_at))
        try:
            try:
                await run()
            except Superseded:
                self._superseded += 1
                log.warning(
                    "job %s attempt %d was re-claimed elsewhere; this worker posts nothing",
                    job.id,
                    info.attempt,
                    extra={"job_id": job.id},
                )
                await self._wait_settled(info)
                return
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if context.abort_reason() == AbortReason.USER_REQUEST:
                await stopped()
                return
            self._retries += 1
            raise HandBack(job.id) from None
        except Retryable as exc:
            self._count_retry(job)
            log.warning("job %s will be retried: %s", job.id, exc.detail)
            raise
        except Exception as exc:
            if not is_transient(exc):
                self._dead += 1
                raise
            # A store went away under the handler (PostgreSQL restarting, Redis down):
            # not the job's fault. Retried, so its inbox rows are not left claimed by a
            # job that failed for good.
            self._count_retry(job)
            log.warning("job %s will be retried: %s: %s", job.id, type(exc).__name__, exc)
            raise Retryable(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._running -= 1
            self._in_hand.discard(info.id)

    def _count_retry(self, job: Job) -> None:
        if job.attempts + 1 >= self.max_attempts:
            self._dead += 1
        else:
            self._retries += 1

    async def _run_thread(self, context: JobContext, thread: str, at: float) -> None:
        handler = self._handlers.thread
        if handler is None:
            raise Retryable("this worker has no thread handler")
        info = self._info(context, at)
        await self._guard(
            context, info, lambda: handler.run(thread, info), lambda: handler.stopped(thread, info)
        )

    async def _run_work(
        self, context: JobContext, kind: str, payload: dict[str, Any], at: float
    ) -> None:
        handler = self._handlers.work.get(kind)
        if handler is None:
            raise Retryable(f"this worker has no handler for {kind!r}")
        info = self._info(context, at)

        async def nothing() -> None:
            log.info("job %s (%s) stopped by request", info.id, kind)

        await self._guard(context, info, lambda: handler(payload, info), nothing)


def _not_due(job: Mapping[str, Any], now: datetime) -> bool:
    return job["status"] == "todo" and bool(job["scheduled_at"]) and job["scheduled_at"] > now


def _behind(job: Mapping[str, Any], later: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``job`` waits behind one of ``later`` of its lock, in the fetch's order."""
    return job["lock"] is not None and any(
        other["lock"] == job["lock"] and fetch_rank(other) < fetch_rank(job) for other in later
    )
