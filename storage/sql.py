"""SQL engine, sessions and migrations.

``create_engine(url)`` builds the async engine for PostgreSQL (asyncpg) or the embedded
SQLite file (aiosqlite). ``upgrade(url)`` runs the Alembic chain to head; the embedded SQLite
default calls it on start, ``switchboard migrate`` calls it for PostgreSQL.

Beside Alembic's ``alembic_version`` every upgrade records the chain it knows in
:data:`LINEAGE_TABLE` (revision -> down revision). That is how an *older* release, rolled
back onto a database a newer release migrated, learns that the unknown revision it finds is
exactly one step past its own head (:func:`schema_position`): the newer release wrote that
row, the older one has no script for it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Column, MetaData, String, Table, event, exc, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
LINEAGE_TABLE = "switchboard_schema_lineage"
"""Alembic bookkeeping like ``alembic_version`` (not a model): every revision an upgrade
knew, with its down revision."""

_lineage = Table(
    LINEAGE_TABLE,
    MetaData(),
    Column("revision", String(64), primary_key=True),
    Column("down_revision", String(64), nullable=True),
)


def create_engine(url: str, *, echo: bool = False, pool_size: int = 5) -> AsyncEngine:
    """An async engine; SQLite gets WAL mode and a busy timeout so readers don't block."""
    if url.startswith("sqlite"):
        engine = _create_async_engine(url, echo=echo, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    engine = _create_async_engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size * 2)
    _check_on_checkout(engine)
    return engine


#: A pooled connection that sat unused longer than this is pinged before it is handed out.
PING_IDLE_AFTER = 10.0


def _check_on_checkout(engine: AsyncEngine) -> None:
    """Never hand out a dead connection, without a round trip on every checkout.

    SQLAlchemy's ``pool_pre_ping`` pings each checkout, and for asyncpg a ping is three
    round trips (``BEGIN``, ``;``, ``ROLLBACK``): on the answer path that was 8 pings per
    answer, each at least a ``BEGIN`` and a ``ROLLBACK`` in the server's log. Instead, a
    connection the server closed (a restart, a failover: asyncpg sees the socket close as
    soon as the event loop runs) is discarded for free, and only a connection idle for
    :data:`PING_IDLE_AFTER` seconds - the one a firewall or proxy may have dropped
    silently - is pinged. Either way the pool opens a new connection and the caller never
    sees the dead one (raising ``DisconnectionError`` in a checkout listener is
    SQLAlchemy's documented way to ask for that)."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        driver = getattr(record, "driver_connection", None)
        is_closed = getattr(driver, "is_closed", None)
        if callable(is_closed) and is_closed():
            raise exc.DisconnectionError("the server closed this connection")
        since = record.info.get("idle_since")
        if since is not None and time.monotonic() - since > PING_IDLE_AFTER:
            try:
                dbapi_connection.ping()
            except Exception as error:  # any failure: the connection is not usable
                raise exc.DisconnectionError(f"ping failed: {error}") from error


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str | None = None, *, migrations: Path = MIGRATIONS_DIR) -> Config:
    """Alembic configuration without an ini file: the scripts ship inside the package
    (``migrations`` points elsewhere only in tests that play another release)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _run(connection: Connection, action: str, revision: str, migrations: Path) -> None:
    cfg = alembic_config(migrations=migrations)
    cfg.attributes["connection"] = connection
    if action == "upgrade":
        command.upgrade(cfg, revision)
        _record_lineage(connection, ScriptDirectory.from_config(cfg))
    else:
        command.downgrade(cfg, revision)


def include_name(name: str | None, type_: str, _parent: object) -> bool:
    """Alembic's ``include_name`` hook: autogenerate leaves :data:`LINEAGE_TABLE` alone."""
    return not (type_ == "table" and name == LINEAGE_TABLE)


def _record_lineage(connection: Connection, script: ScriptDirectory) -> None:
    """Add the revisions this code knows to :data:`LINEAGE_TABLE` (rows only ever added:
    a rolled-back release must not erase what the newer one recorded)."""
    _lineage.create(connection, checkfirst=True)
    known: set[str] = set(connection.execute(select(_lineage.c.revision)).scalars())
    rows = [
        {"revision": s.revision, "down_revision": _down(s.down_revision)}
        for s in script.walk_revisions()
        if s.revision not in known
    ]
    if rows:
        connection.execute(_lineage.insert(), rows)


def _down(down: str | Sequence[str] | None) -> str | None:
    return down if down is None or isinstance(down, str) else ",".join(down)


@dataclass(frozen=True, slots=True)
class SchemaPosition:
    """Where the database's schema stands against this code's migration chain."""

    revision: str | None
    """The database's revision (None: never migrated)."""
    head: str | None
    """This code's head revision."""
    known: bool
    """This code has a script for ``revision``."""
    parent: str | None = None
    """For an unknown revision: its down revision, as the release that wrote it recorded."""

    @property
    def at_head(self) -> bool:
        return self.revision is not None and self.revision == self.head

    @property
    def one_ahead(self) -> bool:
        """The database is exactly one revision past this code's head: a newer release
        migrated it and was rolled back (its migrations are backward compatible for one
        release, so this code runs on that schema)."""
        return not self.known and self.head is not None and self.parent == self.head

    @property
    def behind(self) -> bool:
        return self.known and not self.at_head


async def schema_position(engine: AsyncEngine) -> SchemaPosition:
    """The database's revision, this code's head, and (for a revision this code has no
    script for) the down revision recorded for it in :data:`LINEAGE_TABLE`."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()

    def _read(connection: Connection) -> tuple[str | None, str | None]:
        revision = MigrationContext.configure(connection).get_current_revision()
        if revision is None or not inspect(connection).has_table(LINEAGE_TABLE):
            return revision, None
        parent = connection.execute(
            select(_lineage.c.down_revision).where(_lineage.c.revision == revision)
        ).scalar()
        return revision, parent

    async with engine.connect() as conn:
        revision, parent = await conn.run_sync(_read)
    known = revision is None or _has_script(script, revision)
    return SchemaPosition(
        revision=revision, head=head, known=known, parent=None if known else parent
    )


def _has_script(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:  # "Can't locate revision identified by …"
        return False


async def _migrate(url: str, action: str, revision: str, migrations: Path) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run, action, revision, migrations)
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head", *, migrations: Path = MIGRATIONS_DIR) -> None:
    """Upgrade the database at ``url`` to ``revision`` (idempotent)."""
    await _migrate(url, "upgrade", revision, migrations)


async def downgrade(url: str, revision: str = "base", *, migrations: Path = MIGRATIONS_DIR) -> None:
    """Downgrade the database at ``url`` to ``revision``."""
    await _migrate(url, "downgrade", revision, migrations)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    def _current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def ping(engine: AsyncEngine) -> None:
    """One round trip to the database (``SELECT 1``); raises when it cannot be reached."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
