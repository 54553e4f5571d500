"""The scheduler service: leader election, APScheduler timing, change sync, firings.

Any number of processes run a :class:`SchedulerService`; exactly one — the holder of the
Redis lease ``scheduler`` — runs an APScheduler ``AsyncIOScheduler`` with one job per
enabled schedule. The others stand by, retrying the lease every ``poll_interval`` and at
once when the leader announces it is stepping down.

Why the pieces are there:

* **Lease with renewal and fencing.** The leader renews every ``lease_ttl / 3``. When a
  renewal finds the lease taken, or Redis has been unreachable for a whole TTL, it stops
  its APScheduler at once. Each term's fencing token is written on its run records.
* **Exactly once per firing.** A due firing is planned from SQL (``last_fire_at``, via
  :func:`~scheduler.triggers.due_firings`), then claimed in Redis under
  ``schedule id + scheduled time`` and recorded with a unique SQL key before anything runs.
  A second leader — after a hand-over mid-firing or during a split — loses one of the two
  and skips. (A firing whose leader dies after claiming it is not run again: at most once.)
* **The leader only enqueues.** Built with a ``dispatch`` (``scheduler.queued``), a started
  firing becomes one run-queue job that any worker posts; the leader's loop only times,
  claims and records. Only when the queue stays unreachable does the leader run the
  firing itself (``local_runs`` counts those), rather than drop it.
* **Changes within a second.** Managers publish ``changed <id>`` (``feed.py``); the leader
  reloads that schedule. A full resync every ``resync_interval`` catches lost messages.
* **Misfires.** Planning uses the grace window: after downtime at most one run, the rest
  recorded ``missed``; never a burst.
* **Look-ahead.** Claiming and recording costs a Redis and an SQL round trip per firing,
  and when hundreds of schedules share a minute that queueing made runs start late. So a
  look-ahead pass claims and records the firings due in the next ``lookahead`` in batches
  (concurrent claims, one transaction with one multi-row ``INSERT``) as *pending* runs;
  at the instant one compare-and-set ``UPDATE`` per batch starts them, re-checking that
  each schedule is still enabled (a pause in between drops the firing, as before). A
  leader stopping cleanly gives its pending firings back before releasing the lease; after
  a crash or a lost lease the next leader adopts them (the compare-and-set start still
  lets only one process run each), running them late within the grace window or
  recording them ``missed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger

from scheduler.calendar import BusinessCalendar
from scheduler.feed import CHANGED, RELEASED, ChangeFeed
from scheduler.manage import ScheduleManager
from scheduler.runner import FiringRunner
from scheduler.standup import StandupCollector
from scheduler.triggers import MIN_INTERVAL, Trigger, TriggerError, due_firings
from storage.errors import Conflict, LeaseLost, RedisUnavailable, StorageError
from storage.locks import Lease, RedisLocks
from storage.schedules import PlannedFiring, Schedule, ScheduleRun, ScheduleStore, StandupSession

log = logging.getLogger(f"switchboard.{__name__}")

CLAIM_SCOPE = "schedule-firing"
_ATTEMPTS = 6
#: A firing closer than this is left to the instant path: the look-ahead batch (claims
#: and one transaction) must be done before the instant.
_LOOKAHEAD_MARGIN = timedelta(milliseconds=500)
_CLAIM_BATCH = 32
_STILL_GOING = "the previous run of this schedule was still going"


#: Hands a started firing to the run queue; False when it could not (see scheduler.queued).
Dispatch = Callable[[Schedule, ScheduleRun], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Tunables with production defaults.

    ``lease_ttl`` bounds the hand-over time after a leader dies; ``poll_interval`` is how
    often a standby tries the lease; ``resync_interval`` is the full-resync period;
    ``min_interval`` lowers the shortest interval trigger (tests only).
    """

    lease_ttl: timedelta = timedelta(seconds=6)
    poll_interval: float = 1.0
    resync_interval: float = 30.0
    claim_ttl: timedelta = timedelta(days=2)
    lease_name: str = "scheduler"
    min_interval: timedelta = MIN_INTERVAL
    drain_timeout: float = 30.0
    #: Firings are claimed and recorded at once; at most this many run skills at a time,
    #: so a burst of due schedules does not starve the firing (and the lease) of CPU.
    max_concurrent_runs: int = 16
    max_concurrent_firings: int = 24
    #: Firings due within ``lookahead`` are claimed and recorded ahead, in batches, by a
    #: pass every ``lookahead_interval`` seconds; at the instant they only start. Zero
    #: turns this off (each firing is claimed and recorded at its instant).
    lookahead: timedelta = timedelta(seconds=3)
    lookahead_interval: float = 1.0


@dataclass(frozen=True, slots=True)
class LeaderTerm:
    """One period of leadership, for logs, metrics and tests."""

    holder: str
    token: int
    started: float  # time.time()
    ended: float | None = None


@dataclass(slots=True)
class _Pending:
    """A firing recorded ahead of its instant (or adopted from an earlier leader)."""

    run: ScheduleRun
    row: Schedule
    firing: PlannedFiring | None  # None when adopted: we cannot give it back
    starting: bool = False


class _Fires(BaseTrigger):  # type: ignore[misc]
    """Our :class:`Trigger` as an APScheduler trigger.

    ``first`` is the first wake-up (``now`` when something is already due, so the firing
    code can run or record it). Afterwards the next firing strictly after the later of the
    last wake-up and now: a late wake-up never replays the firings it overslept — the
    firing code plans those from SQL instead.
    """

    def __init__(self, trigger: Trigger, first: datetime | None) -> None:
        self.trigger = trigger
        self.first = first

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is None:
            return self.first
        return self.trigger.next_fire(max(previous_fire_time, now))

    def __str__(self) -> str:
        return self.trigger.description()


class SchedulerService:
    """Leader-elected scheduler; ``async with service:`` starts and stops it."""

    def __init__(
        self,
        *,
        store: ScheduleStore,
        locks: RedisLocks,
        feed: ChangeFeed,
        runner: FiringRunner,
        manager: ScheduleManager,
        collector: StandupCollector | None = None,
        calendar: BusinessCalendar | None = None,
        config: SchedulerConfig | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        holder: str | None = None,
        dispatch: Dispatch | None = None,
        on_leadership: Callable[[bool], None] | None = None,
    ) -> None:
        self.store = store
        #: With a run queue, started firings are enqueued for workers instead of run here.
        self._dispatch = dispatch
        #: Firings this process ran on its own loop (no queue, or the queue was down).
        self.local_runs = 0
        self.manager = manager
        self.runner = runner
        self.collector = collector or StandupCollector(store=store, clock=clock)
        self._locks = locks
        self._feed = feed
        self.calendar = calendar or manager.calendar
        self.config = config or SchedulerConfig()
        self._clock = clock
        self.holder = holder or uuid.uuid4().hex[:12]
        self.terms: list[LeaderTerm] = []
        #: Told True when this replica starts leading and False when it stops (metrics).
        self._on_leadership = on_leadership or (lambda _leading: None)
        self._lease: Lease | None = None
        self._aps: AsyncIOScheduler | None = None
        self._active = False
        self._slots = asyncio.Semaphore(self.config.max_concurrent_runs)
        self._rows: dict[str, Schedule] = {}
        self._claimed: dict[str, None] = {}  # insertion-ordered set of claims won
        # Bounds the claim-and-record phase so a burst never exhausts the Redis/SQL pools.
        self._gate = asyncio.Semaphore(self.config.max_concurrent_firings)
        self._jobs: dict[str, int] = {}
        self._running: set[str] = set()
        self._pending: dict[str, _Pending] = {}  # by schedule id
        self._timers: dict[datetime, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._main: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._lost = asyncio.Event()
        self.listening = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self._active and self._lease is not None

    async def start(self) -> None:
        """Start standing by (and leading when the lease is free); returns at once."""
        if self._main is not None:
            return
        self._stopping.clear()
        self._listener = asyncio.create_task(self._listen(), name="scheduler:listen")
        self._main = asyncio.create_task(self._elect(), name="scheduler:elect")

    async def stop(self) -> None:
        """Step down (announcing it, so a standby takes over at once) and stop."""
        self._stopping.set()
        self._wake.set()
        for task in (self._main, self._listener):
            if task is None:
                continue
            if task is self._listener:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._main = self._listener = None
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=self.config.drain_timeout)
            for task in pending:
                task.cancel()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def job_ids(self) -> frozenset[str]:
        """Ids of the schedules this leader has a timer for (empty on a standby)."""
        return frozenset(self._jobs) if self._aps is not None else frozenset()

    async def wait_leader(self, timeout: float = 10.0) -> None:
        """Wait until this replica leads (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while not self.is_leader:
            if time.monotonic() > deadline:
                raise TimeoutError("this replica did not become the scheduler leader")
            await asyncio.sleep(0.01)

    # -- election -------------------------------------------------------------------------

    async def _elect(self) -> None:
        while not self._stopping.is_set():
            try:
                lease = await self._locks.acquire(
                    self.config.lease_name, ttl=self.config.lease_ttl, holder=self.holder
                )
            except RedisUnavailable:
                lease = None
            if lease is not None:
                await self._lead(lease)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.config.poll_interval)

    async def _lead(self, lease: Lease) -> None:
        term = LeaderTerm(holder=self.holder, token=lease.token, started=time.time())
        log.info("scheduler leader: %s (token %d)", self.holder, lease.token)
        self._lost.clear()
        self._lease = lease
        self._jobs = {}
        self._rows = {}
        aps = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 8},
        )
        renewer = asyncio.create_task(self._keep_lease(lease), name="scheduler:renew")
        resync: asyncio.Task[None] | None = None
        ahead: asyncio.Task[None] | None = None
        try:
            self._aps = aps
            await self._resync(full=True)
            for session in await self.store.standups.open_sessions():
                self._add_close_job(session)
            aps.start()
            self._active = True
            self.terms.append(term)
            self._on_leadership(True)
            resync = asyncio.create_task(self._resync_loop(), name="scheduler:resync")
            ahead = asyncio.create_task(self._lookahead_loop(), name="scheduler:lookahead")
            stop = asyncio.create_task(self._stopping.wait())
            lost = asyncio.create_task(self._lost.wait())
            await asyncio.wait({stop, lost}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            lost.cancel()
        except (StorageError, OSError) as exc:
            log.warning("scheduler leader start-up failed (%s); standing by", exc)
        finally:
            if self._active:
                self._on_leadership(False)
            self._active = False
            self._aps = None
            with contextlib.suppress(Exception):
                aps.shutdown(wait=False)
            for task in (renewer, resync, ahead, *self._timers.values()):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            self._timers.clear()
            if self._stopping.is_set():
                await self._give_back(lease)
            # Whatever is left pending is adopted by the next leader (maybe us again).
            self._pending = {sid: p for sid, p in self._pending.items() if p.starting}
            self._lease = None
            if self.terms and self.terms[-1] is term:
                self.terms[-1] = LeaderTerm(
                    holder=term.holder, token=term.token, started=term.started, ended=time.time()
                )
            released = False
            with contextlib.suppress(Exception):
                released = await self._locks.release(lease)
            if released:
                await self._feed.publish(RELEASED, self.holder)
            log.info("scheduler leader %s stepped down", self.holder)
            if not self._stopping.is_set():
                # Give the others a fair chance at the lease before trying again.
                await asyncio.sleep(self.config.poll_interval)

    async def _keep_lease(self, lease: Lease) -> None:
        interval = max(lease.ttl.total_seconds() / 3, 0.05)
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            try:
                await self._locks.renew(lease)
                last_ok = time.monotonic()
            except LeaseLost:
                log.warning("scheduler lease lost (token %d); stepping down", lease.token)
                self._lost.set()
                return
            except RedisUnavailable:
                if time.monotonic() - last_ok >= lease.ttl.total_seconds():
                    log.warning("Redis unreachable for a whole lease; stepping down")
                    self._lost.set()
                    return

    async def _still_leader(self, *, strict: bool = False) -> bool:
        """True while our lease is current; ``strict`` raises on a Redis error (retry)."""
        lease = self._lease
        if lease is None or self._lost.is_set():
            return False
        try:
            return await self._locks.is_current(lease)
        except RedisUnavailable:
            if strict:
                raise
            return False

    # -- notifications and resync ---------------------------------------------------------

    async def _listen(self) -> None:
        async for kind, ident in self._feed.listen(ready=self.listening):
            if kind == RELEASED and ident != self.holder:
                self._wake.set()
            elif kind == CHANGED and ident and self._aps is not None:
                self._spawn(self._refresh(ident), name=f"scheduler:refresh:{ident}")

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_interval)
            try:
                await self._resync(full=False)
            except (StorageError, OSError) as exc:
                log.warning("scheduler resync failed: %s", exc)
            except Exception:
                log.exception("scheduler resync failed")

    async def _resync(self, *, full: bool) -> None:
        """Make the jobs match SQL: add new schedules, drop gone ones, reload changed ones."""
        if full:
            rows = await self.store.list_schedules(enabled=True)
            for row in rows:
                self._apply(row)
            for session in await self.store.standups.due(self._clock()):
                self._add_close_job(session)
            return
        versions = await self.store.versions()
        for schedule_id in set(self._jobs) - set(versions):
            self._remove(schedule_id)
        changed = [sid for sid, v in versions.items() if self._jobs.get(sid) != v]
        for schedule_id in changed:
            fresh = await self.store.get(schedule_id)
            if fresh is not None:
                self._apply(fresh)
        # Stand-ups opened by a worker (queued firings) get their close timer here.
        for session in await self.store.standups.open_sessions():
            self._add_close_job(session)

    async def _refresh(self, schedule_id: str) -> None:
        row = await self.store.get(schedule_id)
        if row is None:
            self._remove(schedule_id)
            return
        self._apply(row)

    def _apply(self, row: Schedule) -> None:
        """Add, replace or remove the job of one schedule row (and start a manual run)."""
        aps = self._aps
        if aps is None:
            return
        if row.run_requested_at is not None:
            self._spawn(self._manual(row.id, row.run_requested_at), name=f"scheduler:run:{row.id}")
        if not row.enabled:
            self._remove(row.id)
            return
        if self._jobs.get(row.id) == row.version:
            return
        self._rows[row.id] = row
        try:
            trigger = self.manager.trigger(row)
        except TriggerError as exc:
            log.error("schedule %s has an unreadable trigger: %s", row.id, exc)
            self._remove(row.id)
            return
        now = self._clock()
        plan = due_firings(
            trigger,
            row.last_fire_at,
            now,
            grace=timedelta(seconds=row.grace_seconds),
            since=row.created_at,
        )
        first = now if (plan.run is not None or plan.missed) else plan.next
        if first is None:
            self._remove(row.id)
            return
        aps.add_job(
            self._job,
            trigger=_Fires(trigger, first),
            args=(row.id,),
            id=row.id,
            name=f"{row.skill}:{row.id}",
            replace_existing=True,
        )
        self._jobs[row.id] = row.version

    def _advanced(self, row: Schedule, **changes: Any) -> Schedule:
        """``row`` after a firing moved it; the leader's copy follows (records are
        frozen), unless a reload replaced that copy meanwhile."""
        moved = replace(row, **changes)
        if self._rows.get(row.id) is row:
            self._rows[row.id] = moved
        return moved

    def _remove(self, schedule_id: str) -> None:
        self._jobs.pop(schedule_id, None)
        self._rows.pop(schedule_id, None)
        if self._aps is not None:
            with contextlib.suppress(Exception):
                self._aps.remove_job(schedule_id)

    def _add_close_job(self, session: StandupSession) -> None:
        if self._aps is None:
            return
        self._aps.add_job(
            self._close_job,
            trigger=DateTrigger(run_date=session.closes_at, timezone=UTC),
            args=(session.id,),
            id=f"standup-close:{session.id}",
            replace_existing=True,
        )

    def _spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("scheduler task %s failed", task.get_name(), exc_info=task.exception())

    # -- firing ---------------------------------------------------------------------------

    async def _job(self, schedule_id: str) -> None:
        if schedule_id in self._pending:
            return  # recorded ahead; its own timer starts it
        # APScheduler cancels the jobs it is still running when it shuts down (a leader
        # stepping down); a claimed firing must finish instead, so it runs as our own task.
        self._spawn(self._fire_logged(schedule_id), name=f"scheduler:fire:{schedule_id}")

    async def _fire_logged(self, schedule_id: str) -> None:
        try:
            await self.fire_due(schedule_id)
        except Exception:
            log.exception("schedule %s firing crashed", schedule_id)

    async def _close_job(self, session_id: str) -> None:
        self._spawn(self._close(session_id), name=f"scheduler:close:{session_id}")

    async def _close(self, session_id: str) -> None:
        if not await self._still_leader():
            return
        session = await self.store.standups.get(session_id)
        if session is None:
            return
        schedule = await self.store.get(session.schedule_id)
        tz = schedule.tz if schedule is not None else "UTC"
        try:
            await self.runner.close_standup(session_id, tz=tz)
        except Exception:
            log.exception("stand-up %s could not be closed", session_id)

    async def fire_due(self, schedule_id: str) -> str:
        """Run or record whatever is due for a schedule now; returns what happened.

        ``ran`` · ``missed`` (recorded, nothing ran) · ``skipped`` (the previous run was
        still going) · ``taken`` (another leader has it) · ``idle`` (nothing due, paused,
        gone, or not the leader). Redis or SQL blips while deciding are retried: a firing
        is never dropped because a pool was busy for a moment.
        """
        prepared: tuple[Schedule, ScheduleRun] | str = "idle"
        for attempt in range(_ATTEMPTS):
            try:
                async with self._gate:
                    prepared = await self._prepare(schedule_id)
                break
            except (StorageError, OSError) as exc:
                if attempt == _ATTEMPTS - 1:
                    log.error("schedule %s: giving up on this firing (%s)", schedule_id, exc)
                    return "idle"
                log.warning("schedule %s: firing retried after %s", schedule_id, exc)
                await asyncio.sleep(0.05 * 2**attempt)
        if isinstance(prepared, str):
            return prepared
        row, run = prepared
        self._running.add(row.id)
        try:
            await self._execute(row, run)
        finally:
            self._running.discard(row.id)
        return "ran"

    async def _prepare(self, schedule_id: str) -> tuple[Schedule, ScheduleRun] | str:
        """Plan, claim and record a due firing; the caller runs it."""
        # The leader's copy of the row (kept current by notifications and resyncs) plans the
        # firing; begin_firing re-checks it inside its transaction, so a stale copy can only
        # make a firing skip, never run twice or run while paused.
        row = self._rows.get(schedule_id) or await self.store.get(schedule_id)
        if row is None or not row.enabled:
            self._remove(schedule_id)
            return "idle"
        try:
            trigger = self.manager.trigger(row)
        except TriggerError:
            return "idle"
        now = self._clock()
        plan = due_firings(
            trigger,
            row.last_fire_at,
            now,
            grace=timedelta(seconds=row.grace_seconds),
            since=row.created_at,
        )
        if plan.run is None and not plan.missed:
            return "idle"
        if not await self._still_leader(strict=True):
            return "idle"
        if plan.run is None:
            await self.store.firings.record_missed(
                row.id, plan.missed, now=now, next_run_at=plan.next
            )
            self._advanced(row, last_fire_at=max(plan.missed))
            return "missed"
        if not await self._claim(row.id, plan.run):
            return "taken"
        token = self._lease.token if self._lease is not None else None
        if row.id in self._running:
            await self.store.firings.begin(
                row.id,
                plan.run,
                started_at=now,
                fence=token,
                missed=plan.missed,
                next_run_at=plan.next,
                status="skipped",
                error="the previous run of this schedule was still going",
            )
            self._advanced(row, last_fire_at=plan.run)
            return "skipped"
        run = await self.store.firings.begin(
            row.id,
            plan.run,
            started_at=now,
            fence=token,
            missed=plan.missed,
            next_run_at=plan.next,
        )
        if run is None:
            self._rows.pop(row.id, None)  # re-read it next time: it changed under us
            return "taken"
        return self._advanced(row, last_fire_at=plan.run), run

    async def _execute(self, row: Schedule, run: ScheduleRun) -> None:
        if self._dispatch is not None:
            if await self._dispatch(row, run):
                return  # a worker runs it (scheduler.queued)
            log.warning("run queue unavailable: the leader runs firing %s itself", run.id)
        self.local_runs += 1
        async with self._slots:
            result = await self.runner.execute(row, run, on_standup_opened=self._add_close_job)
        if result.paused:
            self._remove(row.id)
            await self._feed.publish(CHANGED, row.id)

    async def _manual(self, schedule_id: str, requested: datetime) -> None:
        """A "run now" request: one extra firing at the requested instant."""
        if not await self._still_leader():
            return
        # Claim first: if Redis fails here the request stays in SQL for the next resync.
        if not await self._claim(schedule_id, requested, manual=True):
            return
        if not await self.store.take_run_request(schedule_id, requested):
            return
        row = await self.store.get(schedule_id)
        if row is None:
            return
        token = self._lease.token if self._lease is not None else None
        run = await self.store.firings.begin(
            row.id,
            requested,
            started_at=self._clock(),
            kind="manual",
            fence=token,
            next_run_at=row.next_run_at,
        )
        if run is None:
            return
        await self._execute(row, run)

    async def _claim(self, schedule_id: str, at: datetime, *, manual: bool = False) -> bool:
        """Claim a firing in Redis (raises RedisUnavailable). A claim this process already
        won counts as ours, so retrying a half-done firing does not drop it."""
        ident = _ident(schedule_id, at, manual=manual)
        if ident in self._claimed:
            return True
        won = await self._locks.claim(CLAIM_SCOPE, ident, ttl=self.config.claim_ttl)
        if won:
            self._claimed[ident] = None
            while len(self._claimed) > 10_000:
                self._claimed.pop(next(iter(self._claimed)))
        return won

    # -- look-ahead -----------------------------------------------------------------------

    async def _lookahead_loop(self) -> None:
        while True:
            try:
                await self._adopt()
                await self._look_ahead()
            except (StorageError, OSError) as exc:
                # The firings not recorded ahead are claimed at their instant instead.
                log.warning("scheduler look-ahead failed: %s", exc)
            except Exception:
                log.exception("scheduler look-ahead failed")
            await asyncio.sleep(self.config.lookahead_interval)

    def _upcoming(self) -> list[PlannedFiring]:
        """The next firing of each schedule due within the look-ahead window.

        Only a firing that is the very next one after ``last_fire_at`` qualifies (nothing
        missed before it); anything else is planned at the instant as before.
        """
        aps = self._aps
        if aps is None or self.config.lookahead <= timedelta(0):
            return []
        now = self._clock()
        earliest, horizon = now + _LOOKAHEAD_MARGIN, now + self.config.lookahead
        planned: list[PlannedFiring] = []
        for job in aps.get_jobs():
            at: datetime | None = job.next_run_time
            if at is None or not earliest <= at <= horizon or job.id in self._pending:
                continue
            row = self._rows.get(job.id)
            if row is None or not row.enabled:
                continue
            try:
                trigger = self.manager.trigger(row)
            except TriggerError:
                continue
            plan = due_firings(
                trigger,
                row.last_fire_at,
                at,
                grace=timedelta(seconds=row.grace_seconds),
                since=row.created_at,
            )
            if plan.run is None or plan.run != at or plan.missed:
                continue
            planned.append(
                PlannedFiring(
                    schedule_id=row.id,
                    scheduled_for=plan.run,
                    next_run_at=plan.next,
                    previous_fire_at=row.last_fire_at,
                )
            )
        return planned

    async def _look_ahead(self) -> None:
        """Claim and record, in batches, the firings due within the look-ahead window."""
        planned = self._upcoming()
        if not planned or not await self._still_leader(strict=True):
            return
        won: list[PlannedFiring] = []
        for start in range(0, len(planned), _CLAIM_BATCH):
            chunk = planned[start : start + _CLAIM_BATCH]
            claims = await asyncio.gather(
                *(self._claim(f.schedule_id, f.scheduled_for) for f in chunk)
            )
            won.extend(f for f, ok in zip(chunk, claims, strict=True) if ok)
        lease = self._lease
        if not won or lease is None:
            return
        try:
            runs = await self.store.firings.preclaim(won, fence=lease.token)
        except Conflict:
            # One of them was recorded meanwhile (a manual run at that very instant?):
            # the claims are ours, so the instant path records them one by one.
            log.info("look-ahead batch conflicted; those firings are recorded at their instant")
            return
        for firing in won:
            run = runs.get(firing.schedule_id)
            row = self._rows.get(firing.schedule_id)
            if run is None or row is None:
                self._rows.pop(firing.schedule_id, None)  # changed under us: re-read it
                continue
            row = self._advanced(
                row, last_fire_at=firing.scheduled_for, next_run_at=firing.next_run_at
            )
            self._pending[row.id] = _Pending(run=run, row=row, firing=firing)
            self._arm(firing.scheduled_for)

    async def _adopt(self) -> None:
        """Take over pending firings nobody here is waiting for (a previous leader's, or
        ours whose start failed): start them at their instant, late within the grace
        window, or record them missed."""
        late: list[int] = []
        now = self._clock()
        for run in await self.store.firings.pending():
            if run.schedule_id in self._pending:
                continue
            row = self._rows.get(run.schedule_id) or await self.store.get(run.schedule_id)
            if row is None:
                continue
            if now - run.scheduled_for > timedelta(seconds=row.grace_seconds):
                late.append(run.id)
                continue
            log.info("adopting pending firing %s of schedule %s", run.id, row.id)
            self._pending[row.id] = _Pending(run=run, row=row, firing=None)
            self._arm(run.scheduled_for)
        if late:
            await self.store.firings.miss(late, now=now)

    def _arm(self, at: datetime) -> None:
        if at not in self._timers:
            self._timers[at] = asyncio.get_running_loop().create_task(
                self._start_when_due(at), name=f"scheduler:at:{at.isoformat()}"
            )

    async def _start_when_due(self, at: datetime) -> None:
        delay = (at - self._clock()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay + 0.001)  # the loop's timers may fire a hair early
        self._timers.pop(at, None)
        batch = [p for p in self._pending.values() if p.run.scheduled_for == at and not p.starting]
        for pending in batch:
            pending.starting = True
        if batch:
            # A task of its own: a leader stepping down cancels timers, never a start.
            self._spawn(self._start(batch), name=f"scheduler:start:{at.isoformat()}")

    async def _start(self, batch: list[_Pending]) -> None:
        """Start a batch of pending firings with one compare-and-set, then run them."""
        now = self._clock()
        lease = self._lease
        skip = {p.run.id: _STILL_GOING for p in batch if p.row.id in self._running}
        ids = [p.run.id for p in batch]
        started: set[int] | None = None
        try:
            for attempt in range(_ATTEMPTS):
                fence = lease.token if lease is not None else batch[0].run.fence
                try:
                    started = set(
                        await self.store.firings.start(ids, started_at=now, fence=fence, skip=skip)
                    )
                    break
                except (StorageError, OSError) as exc:
                    if attempt == _ATTEMPTS - 1:
                        # Still pending in SQL: the next look-ahead pass adopts them.
                        log.error("could not start %d firings (%s)", len(ids), exc)
                        return
                    log.warning("starting %d firings retried after %s", len(ids), exc)
                    await asyncio.sleep(0.05 * 2**attempt)
        finally:
            for pending in batch:
                if self._pending.get(pending.row.id) is pending:
                    del self._pending[pending.row.id]
        for pending in batch:
            if started is None or pending.run.id not in started:
                continue
            row = self._rows.get(pending.row.id) or pending.row
            run = replace(pending.run, started_at=now, fence=fence)
            self._running.add(row.id)
            self._spawn(self._run_started(row, run), name=f"scheduler:fire:{row.id}")

    async def _run_started(self, row: Schedule, run: ScheduleRun) -> None:
        try:
            await self._execute(row, run)
        finally:
            self._running.discard(row.id)

    async def _give_back(self, lease: Lease) -> None:
        """Stepping down cleanly: undo our pending firings so the next leader runs them.

        Only while the lease is still ours (nobody else can have adopted them); otherwise
        they stay pending and the next leader adopts them.
        """
        mine = [p for p in self._pending.values() if p.firing is not None and not p.starting]
        if not mine:
            return
        try:
            if not await self._locks.is_current(lease):
                return
            # Claims first: a firing unclaimed but still recorded is adopted and run by the
            # next leader; one released in SQL but still claimed would be lost.
            for pending in mine:
                ident = _ident(pending.row.id, pending.run.scheduled_for)
                await self._locks.unclaim(CLAIM_SCOPE, ident)
                self._claimed.pop(ident, None)
            released = await self.store.firings.release(
                [(p.run.id, p.firing) for p in mine if p.firing is not None]
            )
            for pending in mine:
                if pending.run.id in released:
                    del self._pending[pending.row.id]
        except (StorageError, OSError) as exc:
            log.warning("pending firings not given back (%s); the next leader adopts them", exc)


def _ident(schedule_id: str, at: datetime, *, manual: bool = False) -> str:
    """The idempotency key of a firing: schedule id + scheduled time."""
    return f"{schedule_id}:{'manual:' if manual else ''}{at.isoformat()}"
