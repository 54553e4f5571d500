"""``switchboard schedules …`` against the embedded database."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from scheduler.cli import schedules_app
from switchboard.cli import schedule_manager

#: The command group as `switchboard schedules` mounts it (the root opens the manager).
SCHEDULES = schedules_app(schedule_manager)


def test_add_list_pause_resume_run_delete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'sb.db'}")
    monkeypatch.delenv("REDIS_URL", raising=False)
    runner = CliRunner()

    added = runner.invoke(
        SCHEDULES,
        [
            "add",
            "digest",
            "--channel",
            "C0PAY",
            "--when",
            "every weekday at 9:00",
            "--tz",
            "Asia/Dubai",
            "--text",
            "24h",
        ],
    )
    assert added.exit_code == 0, added.output
    schedule_id, description, next_runs = added.output.splitlines()
    assert description == "every weekday at 09:00 (Asia/Dubai)"
    assert next_runs.startswith("Next runs: ")

    listed = runner.invoke(SCHEDULES, ["list"])
    assert schedule_id in listed.output and "enabled" in listed.output

    for verb, word in (("pause", "paused"), ("resume", "resumed"), ("run", "run requested")):
        result = runner.invoke(SCHEDULES, [verb, schedule_id[:8]])
        assert result.exit_code == 0 and result.output.strip() == f"{schedule_id} {word}"

    assert runner.invoke(SCHEDULES, ["delete", schedule_id]).exit_code == 0
    assert "no schedules" in runner.invoke(SCHEDULES, ["list"]).output

    bad = runner.invoke(SCHEDULES, ["add", "digest", "--channel", "C0", "--when", "sometime"])
    assert bad.exit_code == 1 and "Try: every weekday at 9:00" in bad.output
    missing = runner.invoke(SCHEDULES, ["pause", "nosuchid"])
    assert missing.exit_code == 1 and "no schedule" in missing.output
