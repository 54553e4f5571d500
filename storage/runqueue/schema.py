"""The queue engine's schema on PostgreSQL: Procrastinate's tables plus our lock hand-off.

Procrastinate ships its schema as one SQL script; ``switchboard migrate`` applies it once
(idempotent: nothing happens when ``procrastinate_jobs`` exists). It is kept out of Alembic
on purpose: its tables are the engine's format, versioned with the pinned engine.

The hand-off trigger: when a job that holds a ``lock`` (a Slack thread) leaves ``doing``,
the next job of that thread becomes fetchable, but Procrastinate only notifies workers on
*insert*, so the waiting job would sit until the next poll. The trigger sends the same
"job inserted" notification on that update, so the thread's next turn starts at once.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from procrastinate.schema import SchemaManager

HANDOFF_SQL = """
CREATE OR REPLACE FUNCTION switchboard_notify_lock_released() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    payload TEXT;
BEGIN
    IF OLD.status = 'doing' AND NEW.status <> 'doing' AND NEW.lock IS NOT NULL THEN
        SELECT json_build_object('type', 'job_inserted', 'job_id', NEW.id)::text INTO payload;
        PERFORM pg_notify('procrastinate_queue_v1#' || NEW.queue_name, payload);
        PERFORM pg_notify('procrastinate_any_queue_v1', payload);
    END IF;
    RETURN NEW;
END;
$$;
DROP TRIGGER IF EXISTS switchboard_lock_released ON procrastinate_jobs;
CREATE TRIGGER switchboard_lock_released
    AFTER UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW EXECUTE PROCEDURE switchboard_notify_lock_released();
"""

# asyncpg spells TLS as ``ssl=``; libpq (psycopg) as ``sslmode=``.
_SSL_PARAMS = {"ssl": "sslmode"}


def libpq_dsn(database_url: str) -> str:
    """``postgresql+asyncpg://u:p@h:5432/db?ssl=require`` → ``postgresql://u:p@h:5432/db?sslmode=require``.

    Procrastinate speaks psycopg 3, the rest of Switchboard asyncpg; both read one
    ``DATABASE_URL``.
    """
    parts = urlsplit(database_url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in {"postgresql", "postgres"}:
        raise ValueError(f"not a PostgreSQL URL: {scheme}://…")
    query = [(_SSL_PARAMS.get(k, k), v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(scheme="postgresql", query=urlencode(query)))


async def queue_schema_ready(dsn: str) -> bool:
    """True when Procrastinate's tables and the hand-off trigger exist."""
    async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=5) as conn:
        cur = await conn.execute(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL, "
            "EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'switchboard_lock_released')"
        )
        row = await cur.fetchone()
    return bool(row and row[0] and row[1])


async def ensure_queue_schema(dsn: str) -> bool:
    """Apply Procrastinate's schema (once) and the hand-off trigger; True when the
    engine's tables were created now. Two concurrent calls are serialized by an advisory
    lock, so parallel ``migrate`` Jobs cannot half-apply it."""
    conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=5)
    async with conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('switchboard-queue-schema'))")
        cur = await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
        row = await cur.fetchone()
        created = not (row and row[0])
        if created:
            await conn.execute(SchemaManager.get_schema())  # a trusted script, shipped
        await conn.execute(HANDOFF_SQL)
    return created
