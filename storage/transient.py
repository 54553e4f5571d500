"""Which failures mean "a store is briefly unreachable", as opposed to a bad request.

A PostgreSQL restart or a Redis blip surfaces as many exception types: SQLAlchemy's
``OperationalError`` / ``InterfaceError`` (asyncpg's "connection does not exist",
"the database system is shutting down", "cannot connect now"), psycopg's
``OperationalError`` under Procrastinate's ``ConnectorException``, redis-py's connection
errors, plain ``OSError`` (connection refused), and our own :class:`StorageError`. Work that
meets one of them should be tried again later (a queued turn is retried), not turned into
an apology; :func:`is_transient` is the one place that decides.
"""

from __future__ import annotations

import aiohttp
import asyncpg
import psycopg
from procrastinate import exceptions as procrastinate_exceptions
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import exc as sa_exc

from storage.errors import Conflict, LeaseLost, NotFound, StorageError

#: Store-specific errors that mean "not reachable right now".
_STORE_ERRORS: tuple[type[BaseException], ...] = (
    StorageError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,  # the engine's pool had no connection in time
    psycopg.OperationalError,
    psycopg.InterfaceError,
    RedisConnectionError,
    RedisTimeoutError,
    # asyncpg under SQLAlchemy's generic DBAPIError: "the database system is shutting
    # down / starting up" (class 57), connection exceptions (class 08), a dropped socket.
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)


def is_transient(exc: BaseException, *, bare_os_errors: bool = True) -> bool:
    """True when ``exc``, or an error it was raised from (``__cause__``), says a store
    could not be reached right now.

    A bare ``OSError`` (asyncpg's "connection refused" comes through SQLAlchemy unwrapped)
    counts only as ``exc`` itself and only with ``bare_os_errors``: where model calls are
    made too (the runtime), it may be the provider's, which is not a store."""
    if bare_os_errors and _bare_os_error(exc):
        return True
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, LeaseLost | NotFound | Conflict):
            return False
        if isinstance(current, _STORE_ERRORS):
            return True
        if isinstance(current, sa_exc.DBAPIError):
            if current.connection_invalidated:
                return True
            if current.orig is not None and current.orig is not current.__cause__:
                current = current.orig  # the driver's error (its own cause is asyncpg's)
                continue
        if isinstance(current, procrastinate_exceptions.ConnectorException):
            # Procrastinate wraps every database error: only a connection failure counts.
            cause = current.__cause__
            return isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError | OSError)
        current = current.__cause__
    return False


def _bare_os_error(exc: BaseException) -> bool:
    if not isinstance(exc, OSError) or isinstance(exc, FileNotFoundError | PermissionError):
        return False
    return not isinstance(exc, aiohttp.ClientError)  # Slack's transport, not a store
