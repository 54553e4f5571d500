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
    # The decided card says so at a glance, and its result reads as fields.
    decided = page.locator("#thread .msg", has_text="Approved by")
    assert decided.locator(".bk-header").inner_text() == "✅ Approved · 1 of 1"
    assert "1 of 1 approval" in decided.inner_text()
    assert decided.locator(".bk-fields div", has_text="Status").inner_text() == "Status\nsucceeded"
    assert '{"id"' not in decided.inner_text()


def test_app_home(page: Any) -> None:
    page.click("#nav-home")
    page.locator("#home .bk-header", has_text="Your skills").wait_for()
    assert "refunds" in page.locator("#home").inner_text()


def test_assistant_panel(page: Any) -> None:
    page.click("#nav-assistant")
    prompt = page.locator("#assistant-prompts button").first
    prompt.wait_for()
    prompt.click()
    # the first prompt is the time in Dubai; the greeting itself mentions the offline model
    page.locator(
        "#assistant-messages .msg", has_text="(offline model) time_now returned"
    ).wait_for()


# -- the first hour (issue 12) ------------------------------------------------------------------

CANNED = "I understood:"


def bot_answers(page: Any, pane: str) -> Any:
    return page.locator(f"{pane} .msg", has=page.locator(".app"))


def test_help_is_the_real_help(page: Any) -> None:
    open_channel(page, "C0SUPPORT")
    send(page, "#composer-input", "@switchboard help")
    mine = page.locator("#messages .msg", has_text="@Switchboard help").last
    mine.locator("button.replies").click()
    answer = page.locator("#thread .msg", has_text="Hi, I'm Switchboard")
    answer.wait_for()
    shown = answer.inner_text()
    assert CANNED not in shown
    assert "ask What time is it for Dev in Dubai?" in shown
    assert "SWITCHBOARD_MODEL=openai:" in shown


def test_every_assistant_prompt_works_when_clicked(page: Any) -> None:
    page.click("#nav-assistant")
    page.locator("#assistant:not([hidden])").wait_for()
    page.click("#assistant-new")
    page.locator("#assistant-prompts button").first.wait_for()
    titles = page.locator("#assistant-prompts button").all_inner_texts()
    assert titles and not [t for t in titles if "Draft a polite reply" in t]  # not offline
    for title in titles:
        page.click("#assistant-new")
        button = page.locator("#assistant-prompts button", has_text=title)
        button.wait_for()
        button.click()
        # the greeting, then the answer to the prompt
        answers = bot_answers(page, "#assistant-messages")
        answers.nth(1).wait_for()
        shown = answers.nth(1).inner_text()
        assert CANNED not in shown, (title, shown)


def test_app_home_try_lines_name_channels_and_skills(page: Any) -> None:
    page.click("#nav-home")
    page.locator("#home .bk-header", has_text="Your skills").wait_for()
    tries = page.locator("#home .bk-context", has_text="Try:").all_inner_texts()
    assert tries and all("C0" not in line for line in tries)
    assert any("digest #payments-alerts 12h" in line for line in tries)
    assert not any("Draft a polite reply" in line for line in tries)


def test_home_refreshes_after_approving_there(page: Any) -> None:
    open_channel(page, "C0PAYMENTS")
    send(page, "#composer-input", "@switchboard refunds issue_refund order_id=1002 amount=15")
    page.locator("#messages .msg", has_text="order_id=1002 amount=15").last.locator(
        "button.replies"
    ).wait_for()
    page.select_option("#person", "U0CAROL")
    page.wait_for_selector('body[data-me="U0CAROL"]')
    # The thread's first reply may be the "Working on it…" placeholder: the card (and
    # the request) can land a moment later, so open Home again until it lists it.
    row = page.locator("#home .bk-section", has_text="order_id=1002")
    for _ in range(50):
        page.click("#nav-home")
        page.locator("#home .bk-section", has_text="Waiting for you (").wait_for()
        if row.count():
            break
        page.wait_for_timeout(200)
    waiting = page.locator("#home .bk-section", has_text="Waiting for you (")
    assert "Waiting for you (0)" not in waiting.inner_text()
    row.wait_for()
    before = page.locator("#home button.bk-button", has_text="Approve").count()
    # the Approve button right under the request's row
    page.locator("#home .bk-actions").nth(0).locator("button", has_text="Approve").click()
    page.wait_for_function(
        "n => document.querySelectorAll('#home button.bk-button').length < n", arg=before * 2
    )
    assert "order_id=1002" not in page.locator("#home").inner_text().split("Requested by you")[0]


def test_schedule_modal_draws_the_channel_picker_and_saves(page: Any) -> None:
    open_channel(page, "C0PAYALERTS")
    send(page, "#composer-input", "/switchboard schedule")
    page.locator("#modal-backdrop:not([hidden])").wait_for()
    body = page.locator("#modal-body")
    assert "[conversations_select]" not in body.inner_text()
    channel = body.locator('select[data-block-id="channel"]')
    assert channel.input_value() == "C0PAYALERTS"  # this conversation, chosen visibly
    skill = body.locator('select[data-block-id="skill"]')
    assert skill.input_value() == ""  # no silent pre-selection
    page.click("#modal-submit")
    error = body.locator('.bk-input[data-block-id="skill"] .error')
    error.wait_for(state="attached")
    page.wait_for_function(
        "() => document.querySelector('.bk-input[data-block-id=\"skill\"] .error').textContent"
    )
    assert "Choose a skill" in error.inner_text()
    assert "Say when" in body.locator('.bk-input[data-block-id="when"] .error').inner_text()
    skill.select_option("digest")
    body.locator('input[data-block-id="when"]').fill("every weekday at 9:00")
    page.click("#modal-submit")
    page.locator("#modal-backdrop[hidden]").wait_for(state="attached")
    page.locator("#messages .msg.ephemeral", has_text="Scheduled digest").wait_for()


def test_run_now_note_shows_the_channel_by_name(page: Any) -> None:
    open_channel(page, "C0PAYALERTS")
    send(page, "#composer-input", "/switchboard schedule digest #payments-alerts every day at 7:00")
    page.locator("#messages .msg.ephemeral", has_text="Scheduled").last.wait_for()
    send(page, "#composer-input", "/switchboard schedules")
    listing = page.locator(
        "#messages .msg.ephemeral", has=page.locator("button", has_text="Run now")
    )
    listing.last.wait_for()
    listing.last.locator("button", has_text="Run now").first.click()
    note = page.locator("#messages .msg.ephemeral", has_text="now; the result goes to")
    note.last.wait_for()
    shown = note.last.inner_text()
    assert "#payments-alerts" in shown and "<#" not in shown and "C0PAYALERTS" not in shown


def test_feedback_is_per_person(page: Any) -> None:
    open_channel(page, "C0SUPPORT")
    send(page, "#composer-input", "@switchboard ask time_now")
    mine = page.locator("#messages .msg", has_text="ask time_now").last
    mine.locator("button.replies").click()
    answer = page.locator("#thread .msg", has_text="time_now returned")
    answer.wait_for()
    answer.locator("button", has_text="👎").click()
    page.locator("#modal-backdrop:not([hidden])").wait_for()
    labels = page.locator("#modal-body label").all_inner_texts()
    assert labels and all(label.count("(optional)") <= 1 for label in labels), labels
    page.click("#modal-close")
    page.locator("#thread .msg.ephemeral", has_text="feedback is recorded").wait_for()
    assert answer.locator("button", has_text="👍").count() == 1  # still there for Sam
    page.select_option("#person", "U0LEO")
    page.wait_for_selector('body[data-me="U0LEO"]')
    page.locator("#thread .msg", has_text="time_now returned").wait_for()
    leo = page.locator("#thread .msg", has_text="time_now returned")
    assert leo.locator("button", has_text="👍").count() == 1  # and for everyone else
    assert page.locator("#thread .msg.ephemeral", has_text="feedback is recorded").count() == 0


def test_person_picker_shows_whole_names(page: Any) -> None:
    clipped = page.evaluate(
        """() => {
        const select = document.getElementById('person');
        const style = getComputedStyle(select);
        const context = document.createElement('canvas').getContext('2d');
        context.font = `${style.fontSize} ${style.fontFamily}`;
        const room = select.clientWidth - 32;  // padding and the arrow
        return [...select.options]
          .filter((o) => context.measureText(o.text).width > room)
          .map((o) => o.text);
      }"""
    )
    assert clipped == []
    assert page.locator("#person-role").inner_text() == "Support Engineer · America/New_York"
    # Times on the page are in that person's Slack zone, as the bot's answers give them.
    zones = page.locator("#messages .msg time").evaluate_all("ts => ts.map((t) => t.title)")
    assert zones and all(z.startswith("America/New_York · ") for z in zones)
    page.select_option("#person", "U0CAROL")
    page.wait_for_selector('body[data-me="U0CAROL"]')
    first = page.locator("#messages .msg time").first
    assert first.get_attribute("title").startswith("Europe/Lisbon · ")


README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "sandbox.png"


@pytest.mark.skipif(
    os.environ.get("SWITCHBOARD_SCREENSHOT") != "1",
    reason="set SWITCHBOARD_SCREENSHOT=1 to retake docs/img/sandbox.png",
)
def test_retake_readme_screenshot(browser: Any, sandbox_url: str) -> None:
    """The README's picture: a refund asked for by Sam and approved by Carol."""
    context = browser.new_context(viewport={"width": 1360, "height": 820})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{sandbox_url}&user=U0SAM")
    page.wait_for_selector("#live.on")
    open_channel(page, "C0PAYMENTS")
    send(
        page,
        "#composer-input",
        '@switchboard refunds issue_refund order_id=1003 amount=25 reason="late delivery"',
    )
    request = page.locator("#messages .msg", has_text="order_id=1003 amount=25").last
    request.locator("button.replies").click()
    page.locator("#thread button.bk-button", has_text="Approve").wait_for()
    page.select_option("#person", "U0CAROL")
    page.wait_for_selector('body[data-me="U0CAROL"]')
    page.locator("#thread button.bk-button", has_text="Approve").click()
    page.locator("#thread .bk-header", has_text="Approved · 1 of 1").wait_for()
    page.locator("#thread .msg", has_text="issue_refund returned").wait_for()
    # the card's header (its decided state) at the top of the pane
    page.locator("#thread .msg", has_text="Approved by").evaluate(
        "node => node.scrollIntoView({block: 'start'})"
    )
    README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(README_SCREENSHOT))
    context.close()
