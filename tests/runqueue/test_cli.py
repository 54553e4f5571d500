"""``switchboard migrate [--check --wait]``, ``worker`` and ``runs`` at the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from switchboard.cli import app
from tests.conftest import _reset_postgres, run_sync

runner = CliRunner()


def test_worker_without_postgres_exits_2_naming_database_url(tmp_path: Path) -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-x", "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    result = runner.invoke(app, ["worker"], env=env)
    assert result.exit_code == 2
    assert "DATABASE_URL" in result.output and "PostgreSQL" in result.output


@pytest.mark.postgres
def test_migrate_check_fails_until_migrated_then_passes(postgres_url: str) -> None:
    run_sync(_reset_postgres(postgres_url))
    env = {
        "DATABASE_URL": postgres_url,
        "SWITCHBOARD_AUDIT_KEY": "test-audit-key-0123456789abcdef-0123",
    }
    before = runner.invoke(app, ["migrate", "--check", "--wait", "1"], env=env)
    assert before.exit_code == 1
    assert len(before.output.strip().splitlines()) == 1  # one line, no traceback
    assert runner.invoke(app, ["migrate"], env=env).exit_code == 0
    assert runner.invoke(app, ["migrate"], env=env).exit_code == 0  # idempotent
    after = runner.invoke(app, ["migrate", "--check", "--wait", "5"], env=env)
    assert after.exit_code == 0, after.output
    assert "(head)" in after.output
    listed = runner.invoke(app, ["runs", "list"], env=env)
    assert listed.exit_code == 0 and "no runs" in listed.output
    missing = runner.invoke(app, ["runs", "show", "999999"], env=env)
    assert missing.exit_code == 1 and "no run with id 999999" in missing.output


def _newer_release(tmp: Path, *revisions: str) -> Path:
    """The migration scripts of a later release: ours plus ``revisions``, each one step
    after the one before it (the first after our head), each adding a harmless table."""
    import shutil

    from alembic.script import ScriptDirectory

    from storage.sql import MIGRATIONS_DIR, alembic_config

    folder = tmp / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    down = ScriptDirectory.from_config(alembic_config()).get_current_head()
    for revision in revisions:
        (folder / "versions" / f"{revision}_later.py").write_text(
            f'''"""A later release's migration (test)."""
import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("later_{revision}", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("later_{revision}")
'''
        )
        down = revision
    return folder


@pytest.mark.postgres
def test_migrate_check_accepts_one_revision_ahead_for_a_rollback(
    postgres_url: str, tmp_path: Path
) -> None:
    """``helm rollback`` runs the previous image on a schema its successor migrated: its
    ``migrate --check`` passes for exactly one unknown revision past its head, recorded as
    such by the newer release, and refuses two (or an unrelated one)."""
    from storage.sql import upgrade

    run_sync(_reset_postgres(postgres_url))
    env = {
        "DATABASE_URL": postgres_url,
        "SWITCHBOARD_AUDIT_KEY": "test-audit-key-0123456789abcdef-0123",
    }
    assert runner.invoke(app, ["migrate"], env=env).exit_code == 0
    newer = _newer_release(tmp_path / "next", "9001")
    run_sync(upgrade(postgres_url, migrations=newer))  # the newer release's migration Job

    rolled_back = runner.invoke(app, ["migrate", "--check"], env=env)
    assert rolled_back.exit_code == 0, rolled_back.output
    assert "revision 9001, one ahead" in rolled_back.output
    # `migrate` itself on the older image does not fail either: nothing to do.
    assert runner.invoke(app, ["migrate", "--check", "--wait", "1"], env=env).exit_code == 0

    two_ahead = _newer_release(tmp_path / "after-next", "9001", "9002")
    run_sync(upgrade(postgres_url, migrations=two_ahead))
    refused = runner.invoke(app, ["migrate", "--check", "--wait", "1"], env=env)
    assert refused.exit_code == 1
    assert "9002, unknown to this release" in refused.output
    assert len(refused.output.strip().splitlines()) == 1


@pytest.mark.postgres
def test_migrate_check_refuses_an_unknown_revision_nobody_recorded(postgres_url: str) -> None:
    """An unknown revision without a lineage row (another app's, a hand edit) is not "one
    ahead": pods keep waiting rather than run on a schema nobody vouched for."""
    import asyncpg

    run_sync(_reset_postgres(postgres_url))
    env = {
        "DATABASE_URL": postgres_url,
        "SWITCHBOARD_AUDIT_KEY": "test-audit-key-0123456789abcdef-0123",
    }
    assert runner.invoke(app, ["migrate"], env=env).exit_code == 0

    async def stamp() -> None:
        conn = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute("UPDATE alembic_version SET version_num = 'f00d'")
        finally:
            await conn.close()

    run_sync(stamp())
    result = runner.invoke(app, ["migrate", "--check"], env=env)
    assert result.exit_code == 1
    assert "f00d, unknown to this release" in result.output
