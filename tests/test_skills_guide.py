"""The "your first skill" guide (docs/skills.md): linked from the README's quick start, and
every command it shows exists with the options it uses (a renamed flag breaks the guide
before it breaks a newcomer)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from switchboard.cli import app

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "skills.md"


def quick_start() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]


def guide_commands() -> list[list[str]]:
    blocks: list[str] = []
    fence: list[str] | None = None
    for line in GUIDE.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            if fence is None:
                fence = [] if line.strip() in ("```", "```sh") else None
                if fence is None:
                    fence = ["<skip>"]
            else:
                if fence[:1] != ["<skip>"]:
                    blocks.append("\n".join(fence) + "\n")
                fence = None
        elif fence is not None:
            fence.append(line)
    commands: list[list[str]] = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)  # continuation lines
        for line in joined.splitlines():
            line = line.split("  #", 1)[0].strip()
            words = line.split()
            if "switchboard" not in words:
                continue
            line = " ".join(words[words.index("switchboard") :])
            commands.append(shlex.split(line)[1:])
    return commands


def test_the_quick_start_links_the_guide() -> None:
    assert "docs/skills.md" in quick_start()


def test_the_guide_covers_every_step() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    for step in (
        "skills new",
        "SWITCHBOARD_SKILLS_DIR",
        "skills validate",
        "console --skill",
        "sandbox --skills",
        ".eval.yaml",
        "eval --dataset",
        "--baseline",
        "rollout: {canary: 10%}",
        "eval compare",
    ):
        assert step in text, step


@pytest.mark.parametrize("command", guide_commands(), ids=" ".join)
def test_every_command_in_the_guide_exists_with_its_options(command: list[str]) -> None:
    path = [w for w in command if not w.startswith("-")]
    runner = CliRunner()
    # the deepest prefix that is a command: its --help must list every option used
    for depth in range(len(path), 0, -1):
        result = runner.invoke(app, [*path[:depth], "--help"])
        if result.exit_code == 0:
            break
    else:
        pytest.fail(f"`switchboard {' '.join(command)}`: no such command")
    if path[:2] == ["eval", "compare"]:
        pytest.skip("`eval compare` comes with the evaluation work (issue 16, item 5)")
    for option in (w.split("=", 1)[0] for w in command if w.startswith("--")):
        assert option in result.output, f"`switchboard {' '.join(command)}`: no {option}"
