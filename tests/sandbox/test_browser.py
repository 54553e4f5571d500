"""The page in a real browser (Playwright driving Debian's Chromium, never a downloaded one).

Skipped when /usr/bin/chromium or the playwright package is missing, unless
SWITCHBOARD_REQUIRE_SERVICES=1 (CI), which turns the skip into a failure. Screenshots go to
artifacts/sandbox/. Every wait is on a selector; there are no fixed sleeps.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.server import SandboxOptions
from switchboard.sandbox import open_sandbox
from tests.sandbox.conftest import ENV

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "sandbox"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000


def _unavailable(reason: str) -> None:
    if os.environ.get("SWITCHBOARD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}; SWITCHBOARD_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def sandbox_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A sandbox served from its own thread and event loop (Playwright's API is sync).

    Yields the URL the sandbox prints, with its per-run ``?token=…``."""
    ready = threading.Event()
    found: dict[str, Any] = {}
    state = tmp_path_factory.mktemp("sandbox") / "state"

    async def serve() -> None:
        options = SandboxOptions(port=0, state_dir=state, persist=False, env=ENV)
        async with open_sandbox(options) as sandbox:
            found["sandbox"] = sandbox
            found["loop"] = asyncio.get_running_loop()
            ready.set()
            await sandbox.wait_closed()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # surfaced to the test below
            found["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, name="sandbox", daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in found:
        raise found["error"]
    yield found["sandbox"].page_url
    found["loop"].call_soon_threadsafe(found["sandbox"].stop)
    thread.join(30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, sandbox_url: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 860})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{sandbox_url}&user=U0SAM")
    page.wait_for_selector("#live.on")  # state loaded and live updates connected
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    context.close()
    assert errors == [], errors


def open_channel(page: Any, channel: str) -> None:
    page.click(f'#channel-list a[data-channel="{channel}"]')
    page.wait_for_selector(f'#channel-list a.active[data-channel="{channel}"]')


def send(page: Any, selector: str, text: str) -> None:
    page.fill(selector, text)
    page.press(selector, "Enter")


def test_mention_is_answered_in_the_thread(page: Any) -> None:
    open_channel(page, "C0SUPPORT")
    send(page, "#composer-input", "@switchboard ask what is <b>this</b>?")
    mine = page.locator("#messages .msg", has_text="what is <b>this</b>?").last
    mine.locator("button.replies").click()
    answer = page.locator("#thread .msg", has_text="(offline model)")
    answer.wait_for()
    # The bot's text is shown as text, never as markup.
    assert "this" in answer.inner_text()
    assert page.locator("#thread .msg b").count() == 0
    assert page.locator("#thread .msg .mention", has_text="@Switchboard").count() == 1


def test_slash_command_answer_only_for_me(page: Any) -> None:
    open_channel(page, "C0PAYMENTS")
    send(page, "#composer-input", "/switchboard skills")
    answer = page.locator("#messages .msg.ephemeral", has_text="Skills you can use here")
    answer.wait_for()
    assert "Only visible to you" in answer.inner_text()
    page.select_option("#person", "U0LEO")
    page.wait_for_selector('body[data-me="U0LEO"]')
    page.wait_for_selector("#messages .msg")
    assert page.locator("#messages .msg.ephemeral", has_text="Skills you can use").count() == 0


def test_refund_is_approved_by_someone_else(page: Any, sandbox_url: str) -> None:
    open_channel(page, "C0PAYMENTS")
    send(page, "#composer-input", "@switchboard refunds issue_refund order_id=1001 amount=25")
    request = page.locator("#messages .msg", has_text="issue_refund order_id=1001 amount=25").last
    request.locator("button.replies").click()
    page.locator("#thread button.bk-button", has_text="Approve").wait_for()
    page.select_option("#person", "U0CAROL")
    page.wait_for_selector('body[data-me="U0CAROL"]')
    page.locator("#thread button.bk-button", has_text="Approve").click()
    page.locator("#thread .msg", has_text="Approved by").wait_for()
    page.locator("#thread .msg", has_text="issue_refund returned").wait_for()
    assert "RF-0000" in page.locator("#thread .msg", has_text="issue_refund returned").inner_text()
    assert page.locator("#thread button.bk-button", has_text="Approve").count() == 0


def test_app_home(page: Any) -> None:
    page.click("#nav-home")
    page.locator("#home .bk-header", has_text="Your skills").wait_for()
    assert "refunds" in page.locator("#home").inner_text()


def test_assistant_panel(page: Any) -> None:
    page.click("#nav-assistant")
    prompt = page.locator("#assistant-prompts button").first
    prompt.wait_for()
    prompt.click()
    page.locator("#assistant-messages .msg", has_text="offline model").wait_for()
