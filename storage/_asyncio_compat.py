"""``asyncio.wait_for`` that never loses a cancellation (the Python 3.12 semantics).

On Python 3.11, ``asyncio.wait_for`` swallows a ``cancel()`` of the calling task when the
awaited operation finishes in the same loop iteration (CPython gh-86296, fixed in 3.12 by
re-implementing ``wait_for`` on ``asyncio.timeout``). redis-py wraps every command write in
``wait_for(..., socket_timeout)``, so cancelling a task that is talking to Redis — a Stop
button, a lease renewer at shutdown, a request timeout — was silently ignored about half
of the time, and the cancelled command's pooled connection was never given back (measured:
149 of 300 cancellations lost against a real Redis, then ``MaxConnectionsError``; fakeredis
lost 233 of 300). :func:`install` puts the 3.12 implementation in place on 3.11; it is
called when :mod:`storage` is imported, before any client is created. On 3.12+ it does
nothing. ``tests/storage/test_asyncio_compat.py`` shows the loss and the fix.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

_ORIGINAL = asyncio.wait_for


async def wait_for(fut: Awaitable[T], timeout: float | None) -> T:
    """Wait for ``fut`` with a timeout; a cancellation of the caller always propagates."""
    if timeout is not None and timeout <= 0:
        task = asyncio.ensure_future(fut)
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.wait({task})
        try:
            return task.result()
        except asyncio.CancelledError as exc:
            raise TimeoutError from exc
    async with asyncio.timeout(timeout):
        return await fut


def install() -> bool:
    """Replace ``asyncio.wait_for`` on Python < 3.12; True when it did."""
    if sys.version_info >= (3, 12):
        return False
    asyncio.wait_for = wait_for  # type: ignore[assignment]
    asyncio.tasks.wait_for = wait_for  # type: ignore[assignment]
    return True


def original() -> Any:
    """The interpreter's own ``wait_for`` (tests compare against it)."""
    return _ORIGINAL
