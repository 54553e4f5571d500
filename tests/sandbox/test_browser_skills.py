"""The Skills page and the workspace banner in a real browser (Playwright driving Debian's
Chromium; skipped without it unless SWITCHBOARD_REQUIRE_SERVICES=1, like test_browser)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.server import SandboxOptions
from switchboard.sandbox import open_sandbox
from tests.sandbox.conftest import ENV
from tests.sandbox.test_browser import CHROMIUM_ARGS, TIMEOUT_MS, browser  # noqa: F401

pytestmark = pytest.mark.browser

SPEC = "name: notes\nversion: '{v}'\ndescription: Notes.\ninstructions: Answer.\n"


@pytest.fixture
def skills_sandbox(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    folder = tmp_path / "skills"
    folder.mkdir()
    (folder / "notes.yaml").write_text(SPEC.format(v="1"))
    ready = threading.Event()
    found: dict[str, Any] = {}

    async def serve() -> None:
        options = SandboxOptions(
            port=0, state_dir=tmp_path / "state", persist=False, env=ENV, skills_dirs=(folder,)
        )
        async with open_sandbox(options) as sandbox:
            found.update(sandbox=sandbox, loop=asyncio.get_running_loop())
            ready.set()
            await sandbox.wait_closed()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    ready.wait(30)
    sandbox = found["sandbox"]
    yield f"{sandbox.url}/skills?token={sandbox.token}", folder
    found["loop"].call_soon_threadsafe(sandbox.stop)
    thread.join(30)


def test_skills_page_and_banner_follow_an_edit_on_disk(
    browser: Any,  # noqa: F811
    skills_sandbox: tuple[str, Path],
) -> None:
    url, folder = skills_sandbox
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS * 2)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    row = page.locator('#skills-table tr[data-skill="notes"]')
    row.wait_for()
    assert "valid" in row.inner_text()

    (folder / "notes.yaml").write_text(SPEC.format(v="2") + "toolz: []\n")
    banner = page.locator("#skills-banner")
    banner.wait_for(state="visible")
    assert "notes.yaml:5 toolz" in banner.inner_text()
    assert "previous version" in row.inner_text()

    workspace = context.new_page()
    workspace.goto(url.replace("/skills?", "/?"))
    top = workspace.locator("#skills-banner")
    top.wait_for(state="visible")
    assert "notes.yaml:5 toolz" in top.inner_text()

    (folder / "notes.yaml").write_text(SPEC.format(v="3"))
    banner.wait_for(state="hidden")
    page.wait_for_function(
        "document.querySelector('#skills-table tr[data-skill=notes]').innerText.includes('3')"
    )
    context.close()
    assert errors == [], errors
