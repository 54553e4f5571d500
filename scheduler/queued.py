"""Scheduled firings on the run queue: the leader enqueues them, workers post them.

The leader decides *whether* a firing runs exactly as before (claim in Redis under
schedule id + scheduled time, a run record with a unique SQL key, a compare-and-set start);
instead of running the skill on its own loop it then defers one ``schedule.fire`` job
that carries only the run record's id. Any worker of the deployment takes it:

* the job's ``queueing_lock`` is the firing's identity (schedule id + scheduled time, plus
  ``manual`` for a "run now"), so a leader hand-over that enqueues the same firing again
  while it waits adds nothing;
* the job's ``lock`` is the schedule, so two firings of one schedule never run at once
  (they share the schedule's conversation);
* the worker runs only a record that is still ``running`` (a duplicate job, or one
  re-claimed after the firing finished, does nothing), and checks right before posting
  that its attempt still owns the job (:meth:`storage.runqueue.JobInfo.check`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from scheduler.feed import CHANGED, ChangeFeed
from scheduler.runner import FiringRunner
from storage.runqueue import JobInfo, QueueUnavailable, RunQueue
from storage.schedules import Schedule, ScheduleRun, ScheduleStore

log = logging.getLogger(f"switchboard.{__name__}")

FIRE_KIND = "schedule.fire"
_ENQUEUE_ATTEMPTS = 5


def firing_identity(run: ScheduleRun) -> str:
    """The dedupe key of a firing on the queue: schedule id + scheduled time."""
    manual = ":manual" if run.kind == "manual" else ""
    return f"fire:{run.schedule_id}:{run.scheduled_for.isoformat()}{manual}"


class QueuedFirings:
    """Both halves: :meth:`dispatch` for the leader, :meth:`handle` for workers."""

    def __init__(
        self,
        *,
        queue: RunQueue,
        store: ScheduleStore,
        runner: FiringRunner,
        feed: ChangeFeed,
    ) -> None:
        self.queue = queue
        self.store = store
        self.runner = runner
        self.feed = feed
        self.enqueued = 0

    async def dispatch(self, row: Schedule, run: ScheduleRun) -> bool:
        """Enqueue a started firing; False when the queue stayed unavailable (the caller
        then runs it itself rather than drop it)."""
        for attempt in range(_ENQUEUE_ATTEMPTS):
            try:
                await self.queue.defer(
                    FIRE_KIND,
                    {"run_id": run.id, "schedule_id": row.id},
                    lock=f"schedule:{row.id}",
                    queueing_lock=firing_identity(run),
                )
                self.enqueued += 1
                return True
            except QueueUnavailable as exc:
                log.warning("firing %s not enqueued yet (%s)", run.id, exc.detail)
                await asyncio.sleep(0.2 * 2**attempt)
        return False

    async def handle(self, payload: Mapping[str, Any], job: JobInfo) -> None:
        """Run one enqueued firing (a :data:`storage.runqueue.WorkHandler`)."""
        run = await self.store.firings.get(int(payload["run_id"]))
        if run is None or run.status != "running":
            log.info("firing %s already closed; nothing to do", payload.get("run_id"))
            return
        schedule = await self.store.get(run.schedule_id)
        if schedule is None:
            return
        result = await self.runner.execute(schedule, run, fence=job.check)
        if result.paused:
            await self.feed.publish(CHANGED, schedule.id)  # the leader drops its timer
