"""Which failures count as "a store is briefly unreachable" (retry later) and which do not."""

from __future__ import annotations

import aiohttp
import asyncpg
import psycopg
import pytest
from procrastinate import exceptions as pexc
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import exc as sa_exc

from storage.errors import LeaseLost, NotFound, RedisUnavailable
from storage.transient import is_transient


def _raised(error: BaseException, *wrappers: type[BaseException]) -> BaseException:
    """``error`` raised, then each wrapper raised ``from`` the one before (a real chain)."""
    current = error
    for wrapper in wrappers:
        try:
            raise wrapper("wrapped") from current
        except wrapper as exc:
            current = exc
    return current


def _dbapi(orig: BaseException) -> sa_exc.DBAPIError:
    """SQLAlchemy's generic DBAPIError over asyncpg's error, as the asyncpg dialect builds it."""
    try:
        raise sa_exc.DBAPIError("SELECT 1", {}, orig) from orig
    except sa_exc.DBAPIError as exc:
        return exc


def _connector(cause: BaseException) -> pexc.ConnectorException:
    try:
        raise pexc.ConnectorException() from cause
    except pexc.ConnectorException as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (RedisUnavailable("checkpoint put: ConnectionError"), True),
        (RedisConnectionError("Error 111 connecting"), True),
        (sa_exc.OperationalError("SELECT 1", {}, Exception("server closed")), True),
        (sa_exc.InterfaceError("SELECT 1", {}, Exception("connection is closed")), True),
        (_dbapi(asyncpg.exceptions.CannotConnectNowError("shutting down")), True),
        (_dbapi(asyncpg.exceptions.ConnectionDoesNotExistError("closed mid-query")), True),
        (ConnectionRefusedError(111, "Connect call failed"), True),
        (_connector(psycopg.OperationalError("connection refused")), True),
        (_raised(RedisUnavailable("x"), RuntimeError), True),  # e.g. the run wrapped it
        # not a store being away:
        (LeaseLost("thread:T0:C1:1.0"), False),
        (NotFound("run", "r1"), False),
        (sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key")), False),
        (_dbapi(asyncpg.exceptions.UniqueViolationError("duplicate key")), False),
        (_connector(psycopg.errors.RaiseException("Job was not found")), False),
        (aiohttp.ClientConnectorError(None, OSError(111, "refused")), False),  # type: ignore[arg-type]
        (ValueError("bad input"), False),
        (FileNotFoundError("skills/x.yaml"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_store_outages_are_transient_and_other_failures_are_not(
    error: BaseException, transient: bool
) -> None:
    assert is_transient(error) is transient


def test_a_bare_connection_error_is_a_store_only_where_no_model_is_called() -> None:
    """Under the runtime a bare ConnectionError may be the model provider's: not a store."""
    refused = ConnectionRefusedError(111, "Connect call failed")
    assert is_transient(refused)
    assert not is_transient(refused, bare_os_errors=False)
    assert not is_transient(_raised(refused, RuntimeError), bare_os_errors=False)
    assert is_transient(RedisUnavailable("x"), bare_os_errors=False)
