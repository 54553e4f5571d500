"""`switchboard sandbox --replay FILE --check` exit codes, through the real command line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sandbox.cli import register
from sandbox.record import iter_lines
from switchboard.logs import configure_logging
from switchboard.sandbox import open_sandbox_bot

SESSION = Path(__file__).parent / "data" / "session.jsonl"


NOISY = ("httpx", "httpcore", "aiosqlite", "asyncio", "alembic.runtime.migration")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The command configures logging for a process: a root handler bound to CliRunner's
    stderr buffer. Put the test process's logging back afterwards, or that handler keeps
    every later test's log lines in a buffer nobody reads (and inside later tests'
    memory measurements)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in NOISY}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, noisy_level in levels.items():
            logging.getLogger(name).setLevel(noisy_level)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setenv("SWITCHBOARD_MODEL", "offline")
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """switchboard"""

    register(app, bots=open_sandbox_bot, configure_logging=configure_logging)
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
