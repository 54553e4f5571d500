"""Background work after the ack: tracked tasks, so shutdown can wait for them.

New work that people start (an answer to a message, a slash command) is *admitted*: past
``max_tasks`` tasks in flight the worker refuses it with :class:`WorkerBusy` and the caller
answers "busy" at once, instead of piling up tasks (each holding a Slack payload, model
context and soon a database connection) until the process runs out of memory. Work that
finishes something already under way - an approval decision, a short notice - is
*spawned* and always runs; it still counts towards the cap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(f"switchboard.{__name__}")


class WorkerBusy(Exception):
    """The worker already runs ``max_tasks`` tasks; the new work was not started."""

    def __init__(self, pending: int) -> None:
        self.pending = pending
        super().__init__(f"{pending} background tasks already running")


class Worker:
    """Starts coroutines as tasks, keeps references (asyncio only keeps weak ones), logs
    their failures, and drains them on shutdown. ``max_tasks`` bounds admitted work."""

    def __init__(self, *, max_tasks: int = 256) -> None:
        if max_tasks < 1:
            raise ValueError("max_tasks must be at least 1")
        self.max_tasks = max_tasks
        self._tasks: set[asyncio.Task[Any]] = set()

    def admit(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Start new work unless ``max_tasks`` tasks are in flight; else close ``coro``
        unstarted and raise :class:`WorkerBusy`."""
        if len(self._tasks) >= self.max_tasks:
            coro.close()
            raise WorkerBusy(len(self._tasks))
        return self.spawn(coro, name=name)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Start work that must run (it completes something already under way)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("background task %s failed", task.get_name(), exc_info=exc)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for running tasks (up to ``timeout``), then cancel what is left."""
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until no task is running (tests and the sandbox use this)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks:
            if loop.time() > deadline:
                raise TimeoutError(f"{len(self._tasks)} background task(s) still running")
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - loop.time()))
