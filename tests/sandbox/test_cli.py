"""`switchboard sandbox --replay FILE --check` exit codes, through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sandbox.cli import register
from sandbox.record import iter_lines

SESSION = Path(__file__).parent / "data" / "session.jsonl"


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setenv("SWITCHBOARD_MODEL", "offline")
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """switchboard"""

    register(app)
    return app


def test_check_passes_on_the_same_behaviour(cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["sandbox", "--replay", str(SESSION), "--check"])
    assert result.exit_code == 0, result.output
    assert "replay matches" in result.output


def test_check_fails_with_a_diff(cli: typer.Typer, tmp_path: Path) -> None:
    changed = tmp_path / "changed.jsonl"
    entries = list(iter_lines(SESSION))
    for entry in entries:
        if entry["type"] == "call" and entry["method"] == "views.publish":
            entry["args"]["view"]["blocks"][0]["text"]["text"] = "Old title"
    changed.write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    result = CliRunner().invoke(cli, ["sandbox", "--replay", str(changed), "--check"])
    assert result.exit_code == 1
    assert '"text": "Old title"' in result.output
    assert any(line.startswith("-") and "Old title" in line for line in result.output.splitlines())


def test_check_needs_replay(cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["sandbox", "--check"])
    assert result.exit_code == 2
    assert "--check needs --replay" in result.output
