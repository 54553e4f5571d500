"""Procrastinate's connectors as the run queue uses them: the psycopg one, patient with a
PostgreSQL that restarts, and the in-memory one of the embedded default, fetching in the
same order as PostgreSQL (:class:`OrderedMemoryConnector`).

Procrastinate does not retry a query that meets a lost connection, and two of its queries
must not simply fail:

* the worker's heartbeat: a failed update stops the whole worker (a failed side task);
* a job's final status (``finish_job``): when it cannot be written, the job stays ``doing``
  under a worker that is alive and heartbeating, so no sweeper ever takes it back, and its
  messages are never answered.

This connector runs every query again, with a short capped backoff, while the failure is a
connection failure (:func:`storage.transient.is_transient`) and ``patience`` has not run
out. Other errors (a constraint, "job not found") are raised at once, as before.

Its pool is cheaper per query than Procrastinate's default (measured: 3 round trips and a
ping per query before, 1 after): every Procrastinate query is one statement, so the
connections are in autocommit (no ``BEGIN``/``COMMIT`` around each), and a connection is
checked before it is handed out only when it sat idle for
:data:`storage.sql.PING_IDLE_AFTER` seconds, as the SQLAlchemy pool does (Procrastinate's
pool pinged on every checkout). A connection that died while busy fails
its query at once, the pool drops it, and the retry above takes a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, LiteralString, TypeVar

import psycopg
import psycopg_pool
from procrastinate import PsycopgConnector
from procrastinate import exceptions as pexc
from procrastinate import utils as putils
from procrastinate.testing import InMemoryConnector

from storage import sql
from storage.transient import is_transient

log = logging.getLogger(f"switchboard.{__name__}")

T = TypeVar("T")


_returned: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = (
    weakref.WeakKeyDictionary()
)


async def _mark_returned(connection: psycopg.AsyncConnection[Any]) -> None:
    _returned[connection] = time.monotonic()


async def _check_if_idle(connection: psycopg.AsyncConnection[Any]) -> None:
    """The pool's ``check``: raising makes it discard the connection and take another."""
    if connection.closed or connection.broken:
        raise psycopg.OperationalError("the connection is closed")
    since = _returned.get(connection)
    if since is None or time.monotonic() - since > sql.PING_IDLE_AFTER:
        await psycopg_pool.AsyncConnectionPool.check_connection(connection)


async def _autocommit(connection: psycopg.AsyncConnection[Any]) -> None:
    await connection.set_autocommit(True)


def make_pool(**options: Any) -> psycopg_pool.AsyncConnectionPool[Any]:
    # ``kwargs`` also open the LISTEN connection, which sets autocommit itself: the pool's
    # connections get it from ``configure`` instead.
    options.update(check=_check_if_idle, reset=_mark_returned, configure=_autocommit)
    return psycopg_pool.AsyncConnectionPool(**options)


class PatientConnector(PsycopgConnector):
    """:class:`procrastinate.PsycopgConnector` whose queries outlast a short outage."""

    def __init__(self, *, patience: float = 30.0, **kwargs: Any) -> None:
        super().__init__(pool_factory=make_pool, **kwargs)
        self.patience = patience
        #: Queries that were run again after a lost connection (for tests and metrics).
        self.retried = 0

    async def _patiently(self, query: str, call: Callable[[], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self.patience
        delay = 0.2
        while True:
            try:
                return await call()
            except pexc.ConnectorException as exc:
                if not is_transient(exc) or time.monotonic() + delay > deadline:
                    raise
                self.retried += 1
                log.warning(
                    "queue query failed (%s); trying again in %.1f s",
                    type(exc.__cause__).__name__,
                    delay,
                    extra={"query": query.strip().split("\n", 1)[0][:60]},
                )
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)

    async def execute_query_async(self, query: LiteralString, **arguments: Any) -> None:
        await self._patiently(
            query, lambda: PsycopgConnector.execute_query_async(self, query, **arguments)
        )

    async def execute_query_one_async(
        self, query: LiteralString, **arguments: Any
    ) -> dict[str, Any]:
        return await self._patiently(
            query, lambda: PsycopgConnector.execute_query_one_async(self, query, **arguments)
        )

    async def execute_query_all_async(
        self, query: LiteralString, **arguments: Any
    ) -> list[dict[str, Any]]:
        return await self._patiently(
            query, lambda: PsycopgConnector.execute_query_all_async(self, query, **arguments)
        )


def fetch_rank(job: Mapping[str, Any]) -> tuple[int, int]:
    """A job's place in ``procrastinate_fetch_job_v2``'s order: higher priority first,
    then the one queued first."""
    return (-job["priority"], job["id"])


class OrderedMemoryConnector(InMemoryConnector):
    """Procrastinate's in-memory connector, taking jobs in the order its PostgreSQL
    ``procrastinate_fetch_job_v2`` takes them.

    In SQL a job waits while another job of its ``lock`` is running, or is waiting with a
    higher priority (or the same priority, queued first), *even one not due yet*. The
    in-memory connector only checked for a running one: a thread's later answer could be
    posted before an earlier one that was waiting out Slack's ``Retry-After``
    (bot.delivery), a re-queued part of an answer overtaken by the next answer.
    """

    async def fetch_job_one(self, queues: Iterable[str] | None, worker_id: int) -> dict[str, Any]:
        assert worker_id in self.workers, f"Worker {worker_id} not found"
        wanted = None if queues is None else set(queues)
        now = putils.utcnow()
        busy: set[str] = set()
        first: dict[str, tuple[int, int]] = {}  # lock -> the (-priority, id) that goes next
        for job in self.jobs.values():
            lock = job["lock"]
            if lock is None:
                continue
            if job["status"] == "doing":
                busy.add(lock)
            elif job["status"] == "todo":
                rank = fetch_rank(job)
                first[lock] = min(first.get(lock, rank), rank)
        ready = [
            job
            for job in self.jobs.values()
            if job["status"] == "todo"
            and (wanted is None or job["queue_name"] in wanted)
            and (not job["scheduled_at"] or job["scheduled_at"] <= now)
            and (
                job["lock"] is None
                or (job["lock"] not in busy and first[job["lock"]] == fetch_rank(job))
            )
        ]
        if not ready:
            return {"id": None}
        job = min(ready, key=fetch_rank)
        job["status"] = "doing"
        job["worker_id"] = worker_id
        self.events[job["id"]].append({"type": "started", "at": now})
        return job

    async def delete_old_jobs_run(self, nb_hours: int, queue: str, statuses: Iterable[str]) -> None:
        """As the base class, and the deleted jobs' events go too (they were kept)."""
        before = set(self.jobs)
        await super().delete_old_jobs_run(nb_hours=nb_hours, queue=queue, statuses=statuses)
        for job_id in before - set(self.jobs):
            self.events.pop(job_id, None)
