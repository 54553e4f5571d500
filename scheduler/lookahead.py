"""Look-ahead: claim and record the next few seconds' firings in batches, start them at once.

Claiming and recording costs a Redis and an SQL round trip per firing, and when hundreds
of schedules share a minute that queueing made runs start late. So a pass every
``interval`` claims and records the firings due within ``window`` in batches (concurrent
claims, one transaction with one multi-row ``INSERT``) as *pending* runs; at the instant
one compare-and-set ``UPDATE`` per batch starts them, re-checking that each schedule is
still enabled (a pause in between drops the firing). A leader stopping cleanly gives its
pending firings back before releasing the lease; after a crash or a lost lease the next
leader adopts them (the compare-and-set start still lets only one process run each),
running them late within the grace window or recording them ``missed``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from scheduler.firing import ATTEMPTS, STILL_GOING, Firings, Spawn
from scheduler.jobs import JobTable
from scheduler.leader import Leadership
from scheduler.manage import ScheduleManager
from scheduler.triggers import TriggerError
from storage.errors import Conflict, StorageError
from storage.locks import Lease
from storage.schedules import PlannedFiring, Schedule, ScheduleRun, ScheduleStore

log = logging.getLogger(f"switchboard.{__name__}")

#: A firing closer than this is left to the instant path: the look-ahead batch (claims
#: and one transaction) must be done before the instant.
MARGIN = timedelta(milliseconds=500)
_CLAIM_BATCH = 32


@dataclass(slots=True)
class _Pending:
    """A firing recorded ahead of its instant (or adopted from an earlier leader)."""

    run: ScheduleRun
    row: Schedule
    firing: PlannedFiring | None  # None when adopted: we cannot give it back
    starting: bool = False


class LookAhead:
    """The leader's look-ahead pass and the timers that start what it recorded."""

    def __init__(
        self,
        *,
        store: ScheduleStore,
        leadership: Leadership,
        jobs: JobTable,
        firings: Firings,
        planner: ScheduleManager,
        clock: Callable[[], datetime],
        spawn: Spawn,
        window: timedelta,
        interval: float,
    ) -> None:
        self._store = store
        self._leadership = leadership
        self._jobs = jobs
        self._firings = firings
        self._planner = planner
        self._clock = clock
        self._spawn = spawn
        self._window = window
        self._interval = interval
        self._pending: dict[str, _Pending] = {}  # by schedule id
        self._timers: dict[datetime, asyncio.Task[None]] = {}

    def has_pending(self, schedule_id: str) -> bool:
        """True when the schedule's next firing is recorded ahead (its timer starts it)."""
        return schedule_id in self._pending

    async def run(self) -> None:
        """Adopt and look ahead every ``interval`` seconds, until cancelled."""
        while True:
            try:
                await self._adopt()
                await self._look_ahead()
            except (StorageError, OSError) as exc:
                # The firings not recorded ahead are claimed at their instant instead.
                log.warning("scheduler look-ahead failed: %s", exc)
            except Exception:
                log.exception("scheduler look-ahead failed")
            await asyncio.sleep(self._interval)

    def timers(self) -> list[asyncio.Task[None]]:
        """The armed timers (a leader stepping down cancels them; then :meth:`cleared`)."""
        return list(self._timers.values())

    def cleared(self) -> None:
        """After a term: forget the timers and whatever is pending but not starting; the
        next leader (maybe us again) adopts those from SQL."""
        self._timers.clear()
        self._pending = {sid: p for sid, p in self._pending.items() if p.starting}

    def _upcoming(self) -> list[PlannedFiring]:
        """The next firing of each schedule due within the look-ahead window.

        Only a firing that is the very next one after ``last_fire_at`` qualifies (nothing
        missed before it); anything else is planned at the instant as before.
        """
        if self._window <= timedelta(0):
            return []
        now = self._clock()
        planned: list[PlannedFiring] = []
        for schedule_id, at in self._jobs.next_wakeups(now + MARGIN, now + self._window):
            if schedule_id in self._pending:
                continue
            row = self._jobs.rows.get(schedule_id)
            if row is None or not row.enabled:
                continue
            try:
                plan = self._planner.plan(row, at)
            except TriggerError:
                continue
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
        if not planned or not await self._leadership.still_leader(strict=True):
            return
        won: list[PlannedFiring] = []
        for start in range(0, len(planned), _CLAIM_BATCH):
            chunk = planned[start : start + _CLAIM_BATCH]
            claims = await asyncio.gather(
                *(self._firings.claim(f.schedule_id, f.scheduled_for) for f in chunk)
            )
            won.extend(f for f, ok in zip(chunk, claims, strict=True) if ok)
        lease = self._leadership.lease
        if not won or lease is None:
            return
        try:
            runs = await self._store.firings.preclaim(won, fence=lease.token)
        except Conflict:
            # One of them was recorded meanwhile (a manual run at that very instant?):
            # the claims are ours, so the instant path records them one by one.
            log.info("look-ahead batch conflicted; those firings are recorded at their instant")
            return
        for firing in won:
            run = runs.get(firing.schedule_id)
            row = self._jobs.rows.get(firing.schedule_id)
            if run is None or row is None:
                self._jobs.forget(firing.schedule_id)  # changed under us: re-read it
                continue
            row = self._jobs.advanced(
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
        for run in await self._store.firings.pending():
            if run.schedule_id in self._pending:
                continue
            row = self._jobs.rows.get(run.schedule_id) or await self._store.get(run.schedule_id)
            if row is None:
                continue
            if now - run.scheduled_for > timedelta(seconds=row.grace_seconds):
                late.append(run.id)
                continue
            log.info("adopting pending firing %s of schedule %s", run.id, row.id)
            self._pending[row.id] = _Pending(run=run, row=row, firing=None)
            self._arm(run.scheduled_for)
        if late:
            await self._store.firings.miss(late, now=now)

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
            self._spawn(self._start(batch), f"scheduler:start:{at.isoformat()}")

    async def _start(self, batch: list[_Pending]) -> None:
        """Start a batch of pending firings with one compare-and-set, then run them."""
        now = self._clock()
        lease = self._leadership.lease
        running = self._firings.running
        skip = {p.run.id: STILL_GOING for p in batch if p.row.id in running}
        ids = [p.run.id for p in batch]
        started: set[int] | None = None
        try:
            for attempt in range(ATTEMPTS):
                fence = lease.token if lease is not None else batch[0].run.fence
                try:
                    started = set(
                        await self._store.firings.start(ids, started_at=now, fence=fence, skip=skip)
                    )
                    break
                except (StorageError, OSError) as exc:
                    if attempt == ATTEMPTS - 1:
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
            row = self._jobs.rows.get(pending.row.id) or pending.row
            run = replace(pending.run, started_at=now, fence=fence)
            running.add(row.id)
            self._spawn(self._firings.run_started(row, run), f"scheduler:fire:{row.id}")

    async def give_back(self, lease: Lease) -> None:
        """Stepping down cleanly: undo our pending firings so the next leader runs them.

        Only while the lease is still ours (nobody else can have adopted them); otherwise
        they stay pending and the next leader adopts them.
        """
        mine = [p for p in self._pending.values() if p.firing is not None and not p.starting]
        if not mine:
            return
        try:
            if not await self._leadership.holds(lease):
                return
            # Claims first: a firing unclaimed but still recorded is adopted and run by the
            # next leader; one released in SQL but still claimed would be lost.
            for pending in mine:
                await self._firings.unclaim(pending.row.id, pending.run.scheduled_for)
            released = await self._store.firings.release(
                [(p.run.id, p.firing) for p in mine if p.firing is not None]
            )
            for pending in mine:
                if pending.run.id in released:
                    del self._pending[pending.row.id]
        except (StorageError, OSError) as exc:
            log.warning("pending firings not given back (%s); the next leader adopts them", exc)
