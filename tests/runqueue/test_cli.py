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
