"""Operator commands over the run queue and the schema: ``switchboard worker``,
``switchboard runs list|show|cancel|retry`` and ``switchboard migrate [--check --wait S]``.

Each is a plain function over :class:`~switchboard.settings.Settings` returning what to print, so
the CLI stays a thin Typer layer and tests call these directly.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from alembic.script import ScriptDirectory

from storage.runqueue import (
    InboxStore,
    JobRow,
    RunQueue,
    ensure_queue_schema,
    libpq_dsn,
    queue_schema_ready,
)
from storage.sql import (
    SchemaPosition,
    alembic_config,
    create_engine,
    current_revision,
    schema_position,
    session_factory,
    upgrade,
)
from switchboard.settings import ConfigError, Settings

T = TypeVar("T")


class OperateError(Exception):
    """A command could not do what was asked; the message is one line for the terminal."""

    def __init__(self, message: str, code: int = 1) -> None:
        self.code = code
        super().__init__(message)


def require_durable_queue(settings: Settings, command: str) -> None:
    if not settings.uses_durable_queue:
        raise ConfigError(
            "DATABASE_URL",
            f"`switchboard {command}` needs PostgreSQL (postgresql+asyncpg://…): the embedded "
            "queue lives inside serve/socket/sandbox",
        )


# -- migrate ------------------------------------------------------------------------------


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def migrate(settings: Settings) -> str:
    """Upgrade SQL to head and (PostgreSQL) apply the queue's schema; idempotent."""
    await upgrade(settings.database_url)
    if settings.uses_durable_queue:
        await ensure_queue_schema(libpq_dsn(settings.database_url))
    engine = create_engine(settings.database_url)
    try:
        return str(await current_revision(engine))
    finally:
        await engine.dispose()


def describe_position(position: SchemaPosition) -> tuple[bool, str]:
    """(ready, one line) for a schema position: at head, or one revision ahead of this
    release's head (a ``helm rollback`` onto a newer schema, which migrations keep
    backward compatible for one release) is ready; behind, never migrated, or further
    ahead is not."""
    revision, head = position.revision, position.head
    if position.at_head:
        return True, f"database is at revision {revision} (head)"
    if position.one_ahead:
        return True, (
            f"database is at revision {revision}, one ahead of this release's head {head} "
            "(rolled back? accepted: migrations stay compatible for one release)"
        )
    if revision is None:
        return False, f"database is not migrated (head is {head}; run `switchboard migrate`)"
    if position.behind:
        return False, f"database is at revision {revision}, head is {head}"
    return False, (
        f"database is at revision {revision}, unknown to this release (head {head}) and not "
        "one revision ahead of it: upgrade the image"
    )


async def schema_at_head(settings: Settings) -> tuple[bool, str]:
    """(ready, what is missing) without changing anything: the schema at head (or one
    revision ahead, see :func:`describe_position`) and, on PostgreSQL, the queue's tables."""
    engine = create_engine(settings.database_url)
    try:
        position = await schema_position(engine)
    finally:
        await engine.dispose()
    ready, message = describe_position(position)
    if not ready:
        return False, message
    if settings.uses_durable_queue and not await queue_schema_ready(
        libpq_dsn(settings.database_url)
    ):
        return False, "the run queue's tables are missing (run `switchboard migrate`)"
    return True, message


async def wait_for_schema(
    settings: Settings,
    *,
    wait: float,
    poll: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[bool, str]:
    """Poll :func:`schema_at_head` for up to ``wait`` seconds (an unreachable database
    counts as not ready), for a pod's init container waiting on the migration Job."""
    deadline = clock() + wait
    while True:
        try:
            ready, message = await schema_at_head(settings)
        except (OSError, ConnectionError) as exc:
            ready, message = False, f"database unreachable ({type(exc).__name__})"
        except Exception as exc:  # e.g. asyncpg's own errors while PostgreSQL starts
            ready, message = False, f"database not ready ({type(exc).__name__})"
        if ready or clock() >= deadline:
            return ready, message
        await asyncio.sleep(min(poll, max(0.0, deadline - clock())))


# -- runs ---------------------------------------------------------------------------------


async def _with_queue(settings: Settings, work: Callable[[RunQueue], Awaitable[T]]) -> T:
    engine = create_engine(settings.database_url)
    queue = RunQueue(
        database_url=settings.database_url,
        inbox=InboxStore(sessions=session_factory(engine)),
        pool_size=2,
    )
    try:
        async with queue.opened():
            return await work(queue)
    finally:
        await engine.dispose()


def _line(job: JobRow) -> str:
    target = job.args.get("thread") or job.args.get("kind") or ""
    return f"{job.id:<8} {job.status:<10} {job.queue:<6} attempts={job.attempts:<2} {target}"


async def runs_list(settings: Settings, *, status: str | None, limit: int) -> list[str]:
    require_durable_queue(settings, "runs list")
    jobs = await _with_queue(settings, lambda q: q.jobs(status=status, limit=limit))
    return [_line(job) for job in jobs] or ["no runs"]


async def runs_show(settings: Settings, job_id: int) -> list[str]:
    require_durable_queue(settings, "runs show")

    async def work(queue: RunQueue) -> list[str]:
        job = await queue.job(job_id)
        if job is None:
            raise OperateError(f"no run with id {job_id}")
        lines = [_line(job), f"lock: {job.lock}", f"args: {json.dumps(dict(job.args))}"]
        for item in await queue.inbox.by_job(job_id):
            lines.append(
                f"message {item.id} from {item.user_id}: {item.status}"
                f" ({item.outcome or '-'}) placeholder={item.placeholder_ts or '-'}"
            )
        return lines

    return await _with_queue(settings, work)


async def runs_cancel(settings: Settings, job_id: int) -> str:
    require_durable_queue(settings, "runs cancel")
    done = await _with_queue(settings, lambda q: q.cancel(job_id))
    if not done:
        raise OperateError(f"run {job_id} is not waiting or running")
    return f"run {job_id}: cancel requested"


async def runs_retry(settings: Settings, job_id: int) -> str:
    require_durable_queue(settings, "runs retry")

    async def work(queue: RunQueue) -> str:
        job = await queue.job(job_id)
        if job is None:
            raise OperateError(f"no run with id {job_id}")
        if job.status not in {"failed", "doing"}:
            raise OperateError(f"run {job_id} is {job.status}; only failed runs can be retried")
        await queue.retry(job_id)
        return f"run {job_id}: queued again"

    return await _with_queue(settings, work)
