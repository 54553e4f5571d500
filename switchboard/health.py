"""The HTTP side of processes that have no Slack endpoint, and the checks every role's
``/readyz`` shares.

``switchboard worker`` and ``switchboard scheduler`` serve ``GET /healthz`` (alive),
``GET /readyz`` and ``GET /metrics`` on ``HOST``:``PORT`` (default ``0.0.0.0:3000``);
with ``METRICS_PORT`` set, ``/metrics`` moves to that port alone, as for ``serve``. What
``/readyz`` checks, per role:

- worker: SQL, Redis, the run queue, the schema version, and that it is not draining
  (after SIGTERM it stops claiming; a 503 takes it out of the rotation at once);
- scheduler: SQL, Redis and the schema version; a standby is ready too (it takes over
  within a lease), and the body says which one leads: ``"leader": true|false``.

The schema check accepts the head of this release's migrations and one revision past it
(a ``helm rollback`` onto a newer schema, see :func:`switchboard.operate.describe_position`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from bot.http import Check, Details, health_routes, metrics_routes, store_checks
from bot.metrics import Metrics
from scheduler.service import SchedulerService
from storage.sql import schema_position
from switchboard.operate import describe_position
from switchboard.services import Services

__all__ = [
    "SideServer",
    "draining_check",
    "leader_gauge",
    "ops_listener",
    "scheduler_details",
    "scheduler_ops_app",
    "schema_check",
    "side_server",
    "wait_for_schema",
]

log = logging.getLogger(__name__)


class SideServer(uvicorn.Server):
    """A uvicorn server that leaves signals to the process (the process's own handler, or
    its main server: two servers capturing SIGTERM would re-raise it at each other)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def side_server(
    app: Starlette, *, host: str, port: int, name: str
) -> AsyncIterator[SideServer]:
    """Serve ``app`` on ``host:port`` while the block runs. Returns once the port is bound;
    a port that cannot be bound stops start-up (OSError), like the main port would."""
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
    )
    server = SideServer(config)
    task = asyncio.create_task(server.serve(), name=name)
    while not server.started:
        if task.done():
            with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind
                task.result()
            raise OSError(f"{name}: could not listen on {host}:{port}")
        await asyncio.sleep(0.02)
    log.info("serving %s on %s:%d", name, host, port)
    try:
        yield server
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


def schema_check(services: Services) -> Check:
    """``/readyz``'s schema check: the database at this release's head (or one ahead)."""

    async def schema() -> str:
        ready, message = describe_position(await schema_position(services.engine))
        return "ok" if ready else message

    return schema


async def wait_for_schema(
    services: Services, *, stopping: asyncio.Event, poll: float = 2.0
) -> bool:
    """Wait until the schema is one this release runs on (True), or ``stopping`` is set
    first (False). A worker started before its migration (no init container, a manual
    run) stays alive and not ready instead of crashing on missing tables."""
    said = ""
    while not stopping.is_set():
        try:
            ready, message = describe_position(await schema_position(services.engine))
        except Exception as exc:  # the database is still starting: keep waiting
            ready, message = False, f"database not reachable ({type(exc).__name__})"
        if ready:
            if said:
                log.info("schema ready: %s", message)
            return True
        if message != said:
            log.warning("waiting for the schema: %s", message)
            said = message
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), poll)
    return False


def draining_check(stopping: asyncio.Event) -> Check:
    """Not ready once ``stopping`` is set (SIGTERM: no new work is taken)."""

    async def accepting() -> str:
        return "draining" if stopping.is_set() else "ok"

    return accepting


def started_check(working: asyncio.Event) -> Check:
    """Not ready until ``working`` is set: a worker's queue workers run, after its start-up
    recovery (threads whose wake-up was lost are re-queued first). Until then a rolling
    update must not count the new pod as capacity and stop an old one."""

    async def started() -> str:
        return "ok" if working.is_set() else "starting"

    return started


def scheduler_details(service: SchedulerService) -> Details:
    """The leader state ``/readyz`` reports for a scheduler."""

    def details() -> Mapping[str, Any]:
        term = service.terms[-1] if service.is_leader and service.terms else None
        return {
            "leader": service.is_leader,
            "holder": service.holder,
            **({"term": term.token} if term is not None else {}),
        }

    return details


def scheduler_ops_app(
    services: Services, service: SchedulerService, *, serve_metrics: bool
) -> Starlette:
    """``switchboard scheduler``'s health, readiness (stores, schema, leader state) and,
    unless on their own port, metrics."""
    checks = {**store_checks(services, queue=False), "schema": schema_check(services)}
    routes: list[Route] = health_routes(checks, details=scheduler_details(service))
    if serve_metrics:
        routes += metrics_routes(services.metrics)
    return Starlette(routes=routes)


@contextlib.asynccontextmanager
async def ops_listener(
    app: Starlette,
    metrics: Metrics,
    *,
    host: str,
    port: int,
    metrics_port: int | None,
    name: str,
) -> AsyncIterator[None]:
    """``app`` on ``port`` and, with ``metrics_port``, ``/metrics`` alone on that port."""
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(side_server(app, host=host, port=port, name=name))
        if metrics_port is not None:
            metrics_app = Starlette(routes=metrics_routes(metrics))
            await stack.enter_async_context(
                side_server(metrics_app, host=host, port=metrics_port, name=f"{name}-metrics")
            )
        yield


def leader_gauge(metrics: Metrics) -> Callable[[bool], None]:
    """What the scheduler calls on acquiring and losing the lease."""

    def report(leading: bool) -> None:
        metrics.scheduler_leader.set(1 if leading else 0)

    return report
