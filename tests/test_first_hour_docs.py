"""What a newcomer reads before running anything (issue 12): the README's quick start says
how to talk to the offline model and how to switch to a real one, and installing the
package prints no deprecation warnings about its metadata."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]


def test_quick_start_says_how_to_talk_to_the_offline_model_and_switch() -> None:
    section = quick_start()
    assert "offline" in section and "@switchboard help" in section
    assert "SWITCHBOARD_MODEL=openai:" in section and "OPENAI_API_KEY=" in section
    assert "OPENAI_BASE_URL=" in section  # any OpenAI-compatible endpoint


def test_the_readme_screenshot_is_there() -> None:
    assert "docs/img/sandbox.png" in quick_start()
    image = ROOT / "docs" / "img" / "sandbox.png"
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_license_is_an_spdx_string() -> None:
    # The `license = {text = …}` table is deprecated (PEP 639): setuptools warned about it
    # three times on every install.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert isinstance(project["project"]["license"], str)
    assert not any(c.startswith("License ::") for c in project["project"].get("classifiers", []))
    requires = project["build-system"]["requires"]
    assert "setuptools>=77" in requires  # the first setuptools that reads SPDX strings
