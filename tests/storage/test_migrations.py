"""Every migration runs up, down and up again, and the models match the migrated schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from storage.models import Base
from storage.sql import (
    LINEAGE_TABLE,
    alembic_config,
    create_engine,
    current_revision,
    downgrade,
    include_name,
    upgrade,
)


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version", LINEAGE_TABLE}


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_name": include_name}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    engine = create_engine(database_url)
    try:
        await upgrade(database_url)
        assert await current_revision(engine) == head
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == set(Base.metadata.tables)

        await downgrade(database_url, "base")
        assert await current_revision(engine) is None
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == set()

        await upgrade(database_url)
        await upgrade(database_url)  # a second upgrade is a no-op, not an error
        assert await current_revision(engine) == head
    finally:
        await engine.dispose()


async def test_models_match_migrated_schema(database_url: str) -> None:
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
        assert diff == [], f"models and migrations differ: {diff}"
    finally:
        await engine.dispose()


def test_one_linear_chain() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1, "migrations must form one linear chain"
    for revision in script.walk_revisions():
        down = revision.down_revision
        assert down is None or isinstance(down, str), f"{revision.revision} merges branches"
