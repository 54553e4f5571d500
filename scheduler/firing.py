"""Firing at the instant: plan from SQL, claim in Redis, record in SQL, then run.

A due firing is planned from the schedule's ``last_fire_at`` (:meth:`ScheduleManager.plan`),
claimed in Redis under ``schedule id + scheduled time`` and recorded with a unique SQL key
before anything runs. A second leader — after a hand-over mid-firing or during a split —
loses one of the two and skips. (A firing whose leader dies after claiming it is not run
again: at most once.) Built with a ``dispatch`` (``scheduler.queued``), a started firing
becomes one run-queue job; only when the queue stays unreachable does the leader run the
firing itself (``local_runs`` counts those), rather than drop it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from scheduler.feed import CHANGED, ChangeFeed
from scheduler.jobs import JobTable
from scheduler.leader import Leadership
from scheduler.manage import ScheduleManager
from scheduler.runner import FiringRunner
from scheduler.triggers import TriggerError
from storage.errors import StorageError
from storage.locks import RedisLocks
from storage.schedules import Schedule, ScheduleRun, ScheduleStore

log = logging.getLogger(f"switchboard.{__name__}")

CLAIM_SCOPE = "schedule-firing"
ATTEMPTS = 6
STILL_GOING = "the previous run of this schedule was still going"

#: Hands a started firing to the run queue; False when it could not (see scheduler.queued).
Dispatch = Callable[[Schedule, ScheduleRun], Awaitable[bool]]
#: Runs a coroutine as a task the service tracks (and drains when it stops).
Spawn = Callable[[Coroutine[Any, Any, Any], str], None]


def ident(schedule_id: str, at: datetime, *, manual: bool = False) -> str:
    """The idempotency key of a firing: schedule id + scheduled time."""
    return f"{schedule_id}:{'manual:' if manual else ''}{at.isoformat()}"


class Firings:
    """Claims, records and runs the leader's firings (scheduled and "run now")."""

    def __init__(
        self,
        *,
        store: ScheduleStore,
        locks: RedisLocks,
        feed: ChangeFeed,
        leadership: Leadership,
        jobs: JobTable,
        planner: ScheduleManager,
        runner: FiringRunner,
        clock: Callable[[], datetime],
        claim_ttl: timedelta,
        max_concurrent_runs: int,
        max_concurrent_firings: int,
        dispatch: Dispatch | None = None,
    ) -> None:
        self._store = store
        self._locks = locks
        self._feed = feed
        self._leadership = leadership
        self._jobs = jobs
        self._planner = planner
        self._runner = runner
        self._clock = clock
        self._claim_ttl = claim_ttl
        #: With a run queue, started firings are enqueued for workers instead of run here.
        self._dispatch = dispatch
        #: Firings this process ran on its own loop (no queue, or the queue was down).
        self.local_runs = 0
        #: Schedules with a firing going on right now (the next one is skipped).
        self.running: set[str] = set()
        self._slots = asyncio.Semaphore(max_concurrent_runs)
        # Bounds the claim-and-record phase so a burst never exhausts the Redis/SQL pools.
        self._gate = asyncio.Semaphore(max_concurrent_firings)
        self._claimed: dict[str, None] = {}  # insertion-ordered set of claims won

    async def fire_due(self, schedule_id: str) -> str:
        """Run or record whatever is due for a schedule now; returns what happened.

        ``ran`` · ``missed`` (recorded, nothing ran) · ``skipped`` (the previous run was
        still going) · ``taken`` (another leader has it) · ``idle`` (nothing due, paused,
        gone, or not the leader). Redis or SQL blips while deciding are retried: a firing
        is never dropped because a pool was busy for a moment.
        """
        prepared: tuple[Schedule, ScheduleRun] | str = "idle"
        for attempt in range(ATTEMPTS):
            try:
                async with self._gate:
                    prepared = await self._prepare(schedule_id)
                break
            except (StorageError, OSError) as exc:
                if attempt == ATTEMPTS - 1:
                    log.error("schedule %s: giving up on this firing (%s)", schedule_id, exc)
                    return "idle"
                log.warning("schedule %s: firing retried after %s", schedule_id, exc)
                await asyncio.sleep(0.05 * 2**attempt)
        if isinstance(prepared, str):
            return prepared
        row, run = prepared
        await self.run_started(row, run)
        return "ran"

    async def _prepare(self, schedule_id: str) -> tuple[Schedule, ScheduleRun] | str:
        """Plan, claim and record a due firing; the caller runs it."""
        # The leader's copy of the row (kept current by notifications and resyncs) plans the
        # firing; begin re-checks it inside its transaction, so a stale copy can only make
        # a firing skip, never run twice or run while paused.
        row = self._jobs.rows.get(schedule_id) or await self._store.get(schedule_id)
        if row is None or not row.enabled:
            self._jobs.remove(schedule_id)
            return "idle"
        now = self._clock()
        try:
            plan = self._planner.plan(row, now)
        except TriggerError:
            return "idle"
        if plan.run is None and not plan.missed:
            return "idle"
        if not await self._leadership.still_leader(strict=True):
            return "idle"
        if plan.run is None:
            await self._store.firings.record_missed(
                row.id, plan.missed, now=now, next_run_at=plan.next
            )
            self._jobs.advanced(row, last_fire_at=max(plan.missed))
            return "missed"
        if not await self.claim(row.id, plan.run):
            return "taken"
        token = self._leadership.token
        if row.id in self.running:
            await self._store.firings.begin(
                row.id,
                plan.run,
                started_at=now,
                fence=token,
                missed=plan.missed,
                next_run_at=plan.next,
                status="skipped",
                error=STILL_GOING,
            )
            self._jobs.advanced(row, last_fire_at=plan.run)
            return "skipped"
        run = await self._store.firings.begin(
            row.id,
            plan.run,
            started_at=now,
            fence=token,
            missed=plan.missed,
            next_run_at=plan.next,
        )
        if run is None:
            self._jobs.forget(row.id)  # re-read it next time: it changed under us
            return "taken"
        return self._jobs.advanced(row, last_fire_at=plan.run), run

    async def run_started(self, row: Schedule, run: ScheduleRun) -> None:
        """Run a started firing, marking its schedule busy meanwhile."""
        self.running.add(row.id)
        try:
            await self._execute(row, run)
        finally:
            self.running.discard(row.id)

    async def _execute(self, row: Schedule, run: ScheduleRun) -> None:
        if self._dispatch is not None:
            if await self._dispatch(row, run):
                return  # a worker runs it (scheduler.queued)
            log.warning("run queue unavailable: the leader runs firing %s itself", run.id)
        self.local_runs += 1
        async with self._slots:
            result = await self._runner.execute(
                row, run, on_standup_opened=self._jobs.add_close_job
            )
        if result.paused:
            self._jobs.remove(row.id)
            await self._feed.publish(CHANGED, row.id)

    async def manual(self, schedule_id: str, requested: datetime) -> None:
        """A "run now" request: one extra firing at the requested instant."""
        if not await self._leadership.still_leader():
            return
        # Claim first: if Redis fails here the request stays in SQL for the next resync.
        if not await self.claim(schedule_id, requested, manual=True):
            return
        if not await self._store.take_run_request(schedule_id, requested):
            return
        row = await self._store.get(schedule_id)
        if row is None:
            return
        run = await self._store.firings.begin(
            row.id,
            requested,
            started_at=self._clock(),
            kind="manual",
            fence=self._leadership.token,
            next_run_at=row.next_run_at,
        )
        if run is None:
            return
        await self._execute(row, run)

    async def claim(self, schedule_id: str, at: datetime, *, manual: bool = False) -> bool:
        """Claim a firing in Redis (raises RedisUnavailable). A claim this process already
        won counts as ours, so retrying a half-done firing does not drop it."""
        key = ident(schedule_id, at, manual=manual)
        if key in self._claimed:
            return True
        won = await self._locks.claim(CLAIM_SCOPE, key, ttl=self._claim_ttl)
        if won:
            self._claimed[key] = None
            while len(self._claimed) > 10_000:
                self._claimed.pop(next(iter(self._claimed)))
        return won

    async def unclaim(self, schedule_id: str, at: datetime) -> None:
        """Give a claim back (a pending firing handed to the next leader)."""
        key = ident(schedule_id, at)
        await self._locks.unclaim(CLAIM_SCOPE, key)
        self._claimed.pop(key, None)
