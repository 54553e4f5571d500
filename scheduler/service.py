"""The scheduler service: one leader-elected process part built from four pieces.

Any number of processes run a :class:`SchedulerService`; exactly one — the holder of the
Redis lease ``scheduler`` — runs an APScheduler ``AsyncIOScheduler`` with one job per
enabled schedule. The others stand by, retrying the lease every ``poll_interval`` and at
once when the leader announces it is stepping down. The pieces, one module each:

* :mod:`scheduler.leader` — the lease, its renewal and fencing, the terms;
* :mod:`scheduler.jobs` — the leader's timers and its copy of the schedules;
* :mod:`scheduler.firing` — plan, claim, record and run (or enqueue) a due firing;
* :mod:`scheduler.lookahead` — record the next seconds' firings ahead, in batches.

This module wires them and keeps the leader's loops: change notifications (managers
publish ``changed <id>``, ``feed.py``; the leader reloads that schedule), the full resync
every ``resync_interval`` that catches lost messages, stand-up closing, and maintenance
jobs (:class:`~scheduler.ports.Maintenance`, the approval expiry sweep) that only the
leader runs (:mod:`scheduler.maintenance`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from scheduler.calendar import BusinessCalendar
from scheduler.feed import CHANGED, RELEASED, ChangeFeed
from scheduler.firing import CLAIM_SCOPE, Dispatch, Firings
from scheduler.jobs import JobTable
from scheduler.leader import Leadership, LeaderTerm
from scheduler.lookahead import LookAhead
from scheduler.maintenance import run_periodically
from scheduler.manage import ScheduleManager
from scheduler.ports import Maintenance
from scheduler.runner import FiringRunner
from scheduler.standup import StandupCollector
from scheduler.triggers import MIN_INTERVAL
from storage.errors import StorageError
from storage.locks import Lease, RedisLocks
from storage.schedules import Schedule, ScheduleStore

__all__ = ["CLAIM_SCOPE", "Dispatch", "LeaderTerm", "SchedulerConfig", "SchedulerService"]

log = logging.getLogger(f"switchboard.{__name__}")


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
        maintenance: Sequence[Maintenance] = (),
    ) -> None:
        self.store = store
        #: Periodic jobs the leader runs while it leads (see scheduler.maintenance).
        self.maintenance = tuple(maintenance)
        self.manager = manager
        self.runner = runner
        self.collector = collector or StandupCollector(store=store, clock=clock)
        self._feed = feed
        self.calendar = calendar or manager.calendar
        self.config = config or SchedulerConfig()
        self._clock = clock
        self.holder = holder or uuid.uuid4().hex[:12]
        #: Told True when this replica starts leading and False when it stops (metrics).
        self._on_leadership = on_leadership or (lambda _leading: None)
        self._leadership = Leadership(
            locks=locks,
            feed=feed,
            holder=self.holder,
            name=self.config.lease_name,
            ttl=self.config.lease_ttl,
        )
        self._jobs = JobTable(
            planner=manager,
            clock=clock,
            on_due=self._job,
            on_run_requested=self._run_requested,
            on_close=self._close_job,
        )
        self._firings = Firings(
            store=store,
            locks=locks,
            feed=feed,
            leadership=self._leadership,
            jobs=self._jobs,
            planner=manager,
            runner=runner,
            clock=clock,
            claim_ttl=self.config.claim_ttl,
            max_concurrent_runs=self.config.max_concurrent_runs,
            max_concurrent_firings=self.config.max_concurrent_firings,
            dispatch=dispatch,
        )
        self._ahead = LookAhead(
            store=store,
            leadership=self._leadership,
            jobs=self._jobs,
            firings=self._firings,
            planner=manager,
            clock=clock,
            spawn=self._spawn,
            window=self.config.lookahead,
            interval=self.config.lookahead_interval,
        )
        self._active = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._main: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self.listening = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self._active and self._leadership.lease is not None

    @property
    def terms(self) -> list[LeaderTerm]:
        """This replica's terms of leadership, oldest first."""
        return self._leadership.terms

    @property
    def local_runs(self) -> int:
        """Firings this process ran on its own loop (no queue, or the queue was down)."""
        return self._firings.local_runs

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
        return self._jobs.ids()

    async def wait_leader(self, timeout: float = 10.0) -> None:
        """Wait until this replica leads (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while not self.is_leader:
            if time.monotonic() > deadline:
                raise TimeoutError("this replica did not become the scheduler leader")
            await asyncio.sleep(0.01)

    async def fire_due(self, schedule_id: str) -> str:
        """Run or record whatever is due for a schedule now (see :mod:`scheduler.firing`)."""
        return await self._firings.fire_due(schedule_id)

    # -- election -------------------------------------------------------------------------

    async def _elect(self) -> None:
        while not self._stopping.is_set():
            lease = await self._leadership.acquire()
            if lease is not None:
                await self._lead(lease)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.config.poll_interval)

    async def _lead(self, lease: Lease) -> None:
        term = self._leadership.begin(lease)
        aps = self._jobs.open()
        renewer = asyncio.create_task(self._leadership.keep(lease), name="scheduler:renew")
        resync: asyncio.Task[None] | None = None
        ahead: asyncio.Task[None] | None = None
        chores: list[asyncio.Task[None]] = []
        try:
            await self._resync(full=True)
            for session in await self.store.standups.open_sessions():
                self._jobs.add_close_job(session)
            aps.start()
            self._active = True
            self._leadership.record(term)
            self._on_leadership(True)
            resync = asyncio.create_task(self._resync_loop(), name="scheduler:resync")
            ahead = asyncio.create_task(self._ahead.run(), name="scheduler:lookahead")
            chores = [
                asyncio.create_task(run_periodically(job), name=f"scheduler:job:{job.name}")
                for job in self.maintenance
            ]
            stop = asyncio.create_task(self._stopping.wait())
            lost = asyncio.create_task(self._leadership.lost.wait())
            await asyncio.wait({stop, lost}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            lost.cancel()
        except (StorageError, OSError) as exc:
            log.warning("scheduler leader start-up failed (%s); standing by", exc)
        finally:
            if self._active:
                self._on_leadership(False)
            self._active = False
            self._jobs.close(aps)
            for task in (renewer, resync, ahead, *chores, *self._ahead.timers()):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if self._stopping.is_set():
                await self._ahead.give_back(lease)
            self._ahead.cleared()
            await self._leadership.end(lease, term)
            if not self._stopping.is_set():
                # Give the others a fair chance at the lease before trying again.
                await asyncio.sleep(self.config.poll_interval)

    # -- notifications and resync ---------------------------------------------------------

    async def _listen(self) -> None:
        async for kind, ident in self._feed.listen(ready=self.listening):
            if kind == RELEASED and ident != self.holder:
                self._wake.set()
            elif kind == CHANGED and ident and self._jobs.aps is not None:
                self._spawn(self._refresh(ident), f"scheduler:refresh:{ident}")

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
            for row in await self.store.list_schedules(enabled=True):
                self._jobs.apply(row)
            for session in await self.store.standups.due(self._clock()):
                self._jobs.add_close_job(session)
            return
        versions = await self.store.versions()
        known = self._jobs.versions()
        for schedule_id in set(known) - set(versions):
            self._jobs.remove(schedule_id)
        changed = [sid for sid, v in versions.items() if known.get(sid) != v]
        for schedule_id in changed:
            fresh = await self.store.get(schedule_id)
            if fresh is not None:
                self._jobs.apply(fresh)
        # Stand-ups opened by a worker (queued firings) get their close timer here.
        for session in await self.store.standups.open_sessions():
            self._jobs.add_close_job(session)

    async def _refresh(self, schedule_id: str) -> None:
        row: Schedule | None = await self.store.get(schedule_id)
        if row is None:
            self._jobs.remove(schedule_id)
            return
        self._jobs.apply(row)

    async def settled(self) -> bool:
        """True when this process is starting no firing and no "Run now" request waits
        for a leader (the sandbox's and the tests' idle waits on it: a request made by a
        click becomes queued work only after the leader has taken it)."""
        if self._tasks:
            return False
        return await self.store.pending_run_requests() == 0

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("scheduler task %s failed", task.get_name(), exc_info=task.exception())

    # -- job callbacks --------------------------------------------------------------------

    async def _job(self, schedule_id: str) -> None:
        if self._ahead.has_pending(schedule_id):
            return  # recorded ahead; its own timer starts it
        # APScheduler cancels the jobs it is still running when it shuts down (a leader
        # stepping down); a claimed firing must finish instead, so it runs as our own task.
        self._spawn(self._fire_logged(schedule_id), f"scheduler:fire:{schedule_id}")

    async def _fire_logged(self, schedule_id: str) -> None:
        try:
            await self._firings.fire_due(schedule_id)
        except Exception:
            log.exception("schedule %s firing crashed", schedule_id)

    def _run_requested(self, schedule_id: str, at: datetime) -> None:
        self._spawn(self._firings.manual(schedule_id, at), f"scheduler:run:{schedule_id}")

    async def _close_job(self, session_id: str) -> None:
        self._spawn(self._close(session_id), f"scheduler:close:{session_id}")

    async def _close(self, session_id: str) -> None:
        if not await self._leadership.still_leader():
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
