"""Running :class:`~scheduler.ports.Maintenance` jobs: on the scheduler leader, or as a
fallback in a process that runs no scheduler.

The leader runs its jobs for as long as it leads (:class:`~scheduler.service.SchedulerService`
calls :func:`run_periodically`). A process with the scheduler turned off
(``SWITCHBOARD_SCHEDULER=false``) cannot tell whether a scheduler runs elsewhere, so it
runs :func:`run_while_leaderless`: the jobs run there only while nobody holds the
scheduler lease, so a deployment without any scheduler still expires its approvals and
one with a scheduler leaves the work to its leader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from scheduler.ports import Maintenance
from storage.errors import RedisUnavailable
from storage.locks import RedisLocks

log = logging.getLogger(f"switchboard.{__name__}")

#: The lease the scheduler leader holds (``SchedulerConfig.lease_name``).
SCHEDULER_LEASE = "scheduler"


async def run_periodically(
    job: Maintenance, *, when: Callable[[], Awaitable[bool]] | None = None
) -> None:
    """Run ``job`` now and every ``job.every`` (when ``when()`` says so), until cancelled."""
    while True:
        try:
            if when is None or await when():
                await job.run()
        except Exception:  # keep going: a Redis or database blip passes
            log.exception("maintenance job %s failed", job.name)
        await asyncio.sleep(job.every.total_seconds())


async def run_while_leaderless(
    job: Maintenance, *, locks: RedisLocks, lease: str = SCHEDULER_LEASE
) -> None:
    """Run ``job`` periodically, but only while no scheduler leader exists."""

    async def leaderless() -> bool:
        try:
            return not await locks.held(lease)
        except RedisUnavailable:
            return True  # unsure: expiring twice is harmless, never expiring is not

    await run_periodically(job, when=leaderless)
