"""Alembic environment: migrations run on a connection handed in by ``storage.sql``."""

from __future__ import annotations

from alembic import context

from storage.models import Base
from storage.sql import include_name

target_metadata = Base.metadata


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `switchboard migrate` (storage.sql.upgrade)")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
