"""The ⏳ reaction while an answer is on its way is cosmetic: it never costs the answer.

Slack rate-limits ``reactions.add`` (Tier 3, about 50 a minute) and ``reactions.remove``
(Tier 2, about 20 a minute) per workspace, so in a burst of mentions most of these calls
are answered 429. Waiting them out used to hold every turn back before it started (the
add) and keep its worker slot and its thread's next message waiting after it was answered
(the remove). Through the app, with the fake Web API answering 429.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from slack_sdk.errors import SlackApiError

from bot.slack.client import retry_after
from bot.status import THINKING_REACTION
from bot.views.runs import WORKING_TEXT
from tests.bot.conftest import BotEnv, BotFactory
from tests.fakes.chat import ScriptedChatModel


async def answered(env: BotEnv, ts: str, count: int = 1, timeout: float = 15.0) -> float:
    """Seconds until the thread of ``ts`` holds ``count`` finished answers."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        texts = [m["text"] for m in env.replies("C0GENERAL", ts)]
        if len(texts) >= count and WORKING_TEXT not in texts:
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"not answered in {timeout} s: {env.replies('C0GENERAL', ts)}")


async def test_a_rate_limited_reaction_does_not_hold_back_the_answer(
    make_bot: BotFactory,
) -> None:
    env = await make_bot({"offline": ScriptedChatModel([], default="Here you go.")})
    env.slack.fail_next("reactions.add", status=429, retry_after=20)
    _, first = await env.mention("ask one")
    took = await answered(env, first)
    # Within the 20 s window the reaction is not asked for again: one refused call.
    _, second = await env.mention("ask two")
    await answered(env, second)
    await env.idle()
    print(f"\nanswered {took:.2f} s after a 429 (Retry-After 20) on reactions.add")
    assert took < 8.0
    assert [c.status for c in env.slack.calls("reactions.add")] == [429]
    assert env.slack.calls("reactions.remove") == []  # never shown, never taken away


async def test_a_rate_limited_removal_waits_in_the_background_not_in_the_thread(
    make_bot: BotFactory,
) -> None:
    env = await make_bot({"offline": ScriptedChatModel([], default="Done.")})
    env.slack.fail_next("reactions.remove", status=429, retry_after=5)
    _, root = await env.mention("ask one")
    await answered(env, root)
    # The next message of the thread (another person: a turn of its own) runs at once,
    # while the first message's ⏳ removal waits out its Retry-After elsewhere.
    started = time.monotonic()
    await env.mention("ask two", user="U0DEV", thread_ts=root)
    await answered(env, root, count=2)
    took = time.monotonic() - started
    await env.idle()
    print(f"\nthe thread's next message answered in {took:.2f} s (removal Retry-After 5)")
    assert took < 4.0
    removals = env.slack.calls("reactions.remove")
    assert [c.status for c in removals] == [429, 200, 200]
    first = next(m for m in env.slack.messages("C0GENERAL") if m["ts"] == root)
    assert THINKING_REACTION not in str(first.get("reactions", []))


async def test_a_rate_limited_stop_button_does_not_hold_back_a_commands_answer(
    make_bot: BotFactory,
) -> None:
    """A slash command's placeholder is posted at the ack; the worker's first edit only adds
    the Stop button to it, so a 429 there is skipped, and the answer replaces it as usual."""
    env = await make_bot({"offline": ScriptedChatModel([], default="The summary.")})
    env.slack.fail_next("chat.update", status=429, retry_after=20)
    started = time.monotonic()
    response = await env.command("ask summarize the week")
    assert response.status_code == 200
    await env.idle()
    took = time.monotonic() - started
    top = [m for m in env.slack.messages("C0GENERAL") if not m.get("thread_ts")]
    print(f"\ncommand answered in {took:.2f} s after a 429 (Retry-After 20) on chat.update")
    assert [m["text"] for m in top] == ["The summary."]
    assert [c.status for c in env.slack.calls("chat.update")] == [429, 200]
    assert took < 8.0


def test_retry_after_is_read_defensively() -> None:
    """A garbled or absurd ``Retry-After`` (a proxy's) never parks work for days."""

    def limited(value: str | None, status: int = 429) -> SlackApiError:
        headers = {} if value is None else {"retry-after": value}
        return SlackApiError("x", SimpleNamespace(status_code=status, headers=headers))

    assert retry_after(limited("7")) == 7.0
    assert retry_after(limited(None)) == 1.0
    assert retry_after(limited("soon")) == 1.0
    assert retry_after(limited("inf")) == 1.0
    assert retry_after(limited("nan")) == 1.0
    assert retry_after(limited("-5")) == 0.0
    assert retry_after(limited("99999999")) == 3600.0
    assert retry_after(limited("7", status=500)) is None
