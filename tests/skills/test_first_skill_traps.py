"""The first hour with a new skill (issue 16, item 10): every command says which skills it
loaded and from where, and nothing passes silently."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from switchboard.cli import app

NOTES = """\
name: notes
version: '2'
description: Answer questions about the team's notes.
instructions: Answer from the notes.
"""


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SWITCHBOARD_SKILLS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'sb.db'}")


def test_validate_on_an_empty_folder_is_an_error_saying_nothing_was_checked(
    tmp_path: Path,
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.eval.yaml").write_text("skill: notes\n")  # a dataset only
    result = CliRunner().invoke(app, ["skills", "validate", "empty"])
    assert result.exit_code == 2
    assert "no skill spec found in empty" in result.output
    assert "valid" not in result.output.replace("*.yaml", "")


def test_validate_says_how_many_files_it_checked(tmp_path: Path) -> None:
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "notes.yaml").write_text(NOTES)
    result = CliRunner().invoke(app, ["skills", "validate", "team"])
    assert result.exit_code == 0, result.output
    assert "checked 1 spec file(s) in team: 1 skill(s), all valid" in result.output

    (tmp_path / "team" / "broken.yaml").write_text("name: broken\ndescription: x\n")
    result = CliRunner().invoke(app, ["skills", "validate", "team"])
    assert result.exit_code == 1
    assert "team/broken.yaml" in result.output and "1 error(s) in 2 spec file(s)" in result.output


def test_skills_list_says_where_each_skill_comes_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = CliRunner().invoke(app, ["skills", "list"])
    assert result.exit_code == 0
    assert result.output.startswith("skills from: built-ins only (set SWITCHBOARD_SKILLS_DIR")
    assert "(built-in)" in result.output

    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "notes.yaml").write_text(NOTES)
    (tmp_path / "team" / "notes-v3.yaml").write_text(
        NOTES.replace("'2'", "'3'") + "rollout: {canary: 10%}\n"
    )
    monkeypatch.setenv("SWITCHBOARD_SKILLS_DIR", str(tmp_path / "team"))
    result = CliRunner().invoke(app, ["skills", "list"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"skills from: built-ins, {tmp_path / 'team'}")
    [line] = [line for line in result.output.splitlines() if line.startswith("notes ")]
    assert "[v2 / v3 (10%)]" in line and f"({tmp_path / 'team' / 'notes.yaml'})" in line


def test_console_with_an_unknown_skill_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = CliRunner().invoke(app, ["console", "--skill", "notes"], input="")
    assert result.exit_code == 1
    assert "there is no skill named 'notes'; looked in only the built-in skills" in result.output
    assert "SWITCHBOARD_SKILLS_DIR is not set" in result.output

    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "notes.yaml").write_text(NOTES + "toolz: []\n")
    monkeypatch.setenv("SWITCHBOARD_SKILLS_DIR", str(tmp_path / "team"))
    result = CliRunner().invoke(app, ["console", "--skill", "notes"], input="")
    assert result.exit_code == 1
    assert f"{tmp_path / 'team' / 'notes.yaml'} did not load" in result.output
    assert "notes.yaml:5 toolz: unknown key" in result.output


def test_console_prints_the_skills_it_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "notes.yaml").write_text(NOTES)
    monkeypatch.setenv("SWITCHBOARD_SKILLS_DIR", str(tmp_path / "team"))
    result = CliRunner().invoke(app, ["console", "--skill", "notes"], input="")
    assert result.exit_code == 0, result.output
    assert f"skills from: built-ins, {tmp_path / 'team'}" in result.output
    assert f"  notes v2  {tmp_path / 'team' / 'notes.yaml'}" in result.output
    assert "  refunds  built-in" in result.output
