"""The run queue over a PostgreSQL that restarts or drops connections (a private cluster,
never the shared server).

Procrastinate alone does not retry a query whose connection is killed under it: a failed
heartbeat stops the worker, and a job whose end cannot be written stays ``doing`` forever
under a live worker. :class:`PatientConnector` runs such a query again; the worker
outlasts a restart with a turn in flight, every job's end is written, and work deferred
after the restart runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from storage.runqueue import Handlers, InboxStore, JobInfo, RunQueue
from storage.runqueue._connector import PatientConnector
from storage.runqueue.schema import libpq_dsn
from storage.sql import create_engine, session_factory
from tests.chaos.conftest import _prepare
from tests.chaos.harness import PrivatePostgres

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return False


class Turns:
    """Claims the thread's rows like the bot does; the first turn outlasts the outage."""

    def __init__(self, inbox: InboxStore, outage: asyncio.Event) -> None:
        self.inbox = inbox
        self.outage = outage
        self.answered: list[str] = []
        self.attempts: list[tuple[str, int]] = []

    async def run(self, thread_key: str, job: JobInfo) -> None:
        self.attempts.append((thread_key, job.attempt))
        items = await self.inbox.claim(thread_key, job.id)
        if thread_key == "T-during" and job.attempt == 0:
            self.outage.set()
            await asyncio.sleep(4.0)  # PostgreSQL goes away meanwhile: finish() fails
        await self.inbox.finish([i.id for i in items], "reply")
        self.answered.extend(str(i.payload["text"]) for i in items)

    async def stopped(self, thread_key: str, job: JobInfo) -> None:
        return None


async def test_a_worker_survives_a_postgres_restart_and_retries_the_turn_it_broke(
    private_postgres: PrivatePostgres,
) -> None:
    url = private_postgres.url
    await _prepare(url)
    engine = create_engine(url)
    inbox = InboxStore(sessions=session_factory(engine))
    queue = RunQueue(
        database_url=url,
        inbox=inbox,
        heartbeat=0.5,
        stalled_timeout=5.0,
        fetch_poll=0.5,
        abort_poll=0.5,
        backoff=1.0,
    )
    connector = queue.app.connector
    assert isinstance(connector, PatientConnector)
    outage = asyncio.Event()
    turns = Turns(inbox, outage)

    async def submit(thread: str, text: str) -> None:
        await inbox.add(dedupe_key=text, thread_key=thread, user_id="U1", payload={"text": text})
        await queue.wake(thread)

    stop = asyncio.Event()
    try:
        async with queue.opened():
            worker = asyncio.create_task(
                queue.run_worker(Handlers(thread=turns), concurrency=4, stop=stop)
            )
            await submit("T-before", "before")
            await submit("T-during", "during")
            assert await wait_for(outage.is_set, 20)
            await asyncio.to_thread(private_postgres.stop)
            await asyncio.sleep(2.0)
            await asyncio.to_thread(private_postgres.start)
            back = time.monotonic()
            await submit("T-after", "after")  # a defer on the reconnected pool
            done = await wait_for(lambda: len(turns.answered) == 3, 60)
            took = time.monotonic() - back
            backlog = await inbox.backlog()
            jobs = await queue.jobs()
            stop.set()
            await worker
    finally:
        await engine.dispose()
    print(
        f"\nPostgreSQL restart under a worker: answered={sorted(turns.answered)} "
        f"attempts={turns.attempts} worker restarts={queue.worker_restarts} "
        f"retries={queue.worker_stats().retries} queries retried="
        f"{connector.retried} recovered in {took:.1f} s; jobs={[j.status for j in jobs]}"
    )
    assert done, turns.attempts
    assert sorted(turns.answered) == ["after", "before", "during"]  # each once
    assert backlog.pending == 0 and backlog.claimed == 0
    # Every job's end was written: none left "doing" under a live worker (never swept).
    assert sorted(j.status for j in jobs) == ["succeeded"] * 3


async def test_a_query_whose_connection_is_killed_under_it_is_run_again(
    private_postgres: PrivatePostgres,
) -> None:
    """A query in flight when PostgreSQL terminates its backend (what ``pg_ctl stop -m
    fast`` does to every session) fails with AdminShutdown; the connector runs it again
    on a fresh connection instead of raising into Procrastinate."""
    import psycopg

    await _prepare(private_postgres.url)
    dsn = libpq_dsn(private_postgres.url)
    connector = PatientConnector(patience=20.0, conninfo=dsn, min_size=1, max_size=2)
    await connector.open_async()
    try:
        await connector.execute_query_async("SELECT 1")  # the pool has a connection
        query = asyncio.create_task(
            connector.execute_query_one_async(
                "SELECT pg_sleep(1.5), 'done' AS result, %(tag)s AS tag", tag="slow"
            )
        )
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            for _ in range(50):
                await asyncio.sleep(0.1)
                cursor = await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'SELECT pg_sleep(1.5)%%' AND pid <> pg_backend_pid()"
                )
                if await cursor.fetchall():
                    break
        row = await query
    finally:
        await connector.close_async()
    print(f"\nkilled mid-query: result={row['result']} retried={connector.retried}")
    assert row["result"] == "done"
    assert connector.retried == 1
