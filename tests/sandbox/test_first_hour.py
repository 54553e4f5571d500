"""A newcomer's first hour in the sandbox, on the offline model (issue 12), without a browser.

Every example the product shows is sent as a person would send it and must get a real
answer there (not the canned reply); the flows behind schedules, Run now and the Assistant
panel's digest read as they should. The browser versions are in ``test_browser.py``.
"""

from __future__ import annotations

import re
from typing import Any

from sandbox.server import RunningSandbox

CANNED = "I understood:"


def replies(sb: RunningSandbox, channel: str, ts: str) -> list[dict[str, Any]]:
    return [m for m in sb.emulator.messages[channel] if m.get("thread_ts") == ts and m["ts"] != ts]


def home_examples(sb: RunningSandbox, user: str) -> list[str]:
    view = sb.emulator.home_view(user)
    assert view is not None
    lines = [
        element["text"]
        for block in view["blocks"]
        if block["type"] == "context"
        for element in block["elements"]
        if str(element.get("text", "")).startswith("Try: ")
    ]
    return [example for line in lines for example in re.findall(r"`([^`]+)`", line)]


def skill_of(message: dict[str, Any]) -> str | None:
    """The skill that answered: the label under an answer, or an approval card's Skill."""
    for block in message.get("blocks") or []:
        for field in block.get("fields") or []:
            found = re.match(r"\*Skill\*\n([a-z][a-z0-9_-]*)$", str(field.get("text")))
            if found:
                return found.group(1)
        for element in block.get("elements") or []:
            found = re.match(r"_([a-z][a-z0-9_-]*)_ · was this helpful\?", str(element.get("text")))
            if found:
                return found.group(1)
    return None


async def answer_to(
    sb: RunningSandbox, text: str, *, channel: str = "C0PAYMENTS"
) -> dict[str, Any]:
    message = await sb.actions.say(user="U0SAM", channel=channel, text=f"@switchboard {text}")
    await sb.actions.settle()
    found = replies(sb, channel, str(message["ts"]))
    assert found, f"no answer to {text!r}"
    return found[-1]


async def test_every_app_home_example_works_offline(sandbox: RunningSandbox) -> None:
    await sandbox.actions.open_home(user="U0SAM")
    await sandbox.actions.settle()
    examples = home_examples(sandbox, "U0SAM")
    assert len(examples) >= 6
    # Examples name channels the way people do, never by raw id.
    assert not [e for e in examples if re.search(r"\bC0[A-Z0-9]+\b", e)]
    # An example the offline model can't do is not shown offline.
    assert not [e for e in examples if "Draft a polite reply" in e]
    for example in examples:
        answer = await answer_to(sandbox, example)
        assert CANNED not in str(answer["text"]), (example, answer["text"])
        assert skill_of(answer) == example.split()[0], (example, skill_of(answer))


async def test_every_help_example_works_offline(sandbox: RunningSandbox) -> None:
    help_answer = await answer_to(sandbox, "help")
    examples = re.findall(r"`([^`]+)`", str(help_answer["text"]).split("Mention me")[0])
    assert "ask What time is it for Dev in Dubai?" in examples
    for example in examples:
        answer = await answer_to(sandbox, example)
        assert CANNED not in str(answer["text"]), (example, answer["text"])


async def test_every_assistant_prompt_works_offline(sandbox: RunningSandbox) -> None:
    actions, emulator = sandbox.actions, sandbox.emulator
    thread = await actions.start_assistant(user="U0SAM", context_channel="C0PAYALERTS")
    await actions.settle()
    dm = emulator.dm_of("U0SAM")
    greeting = str(replies(sandbox, dm, thread)[0]["text"])
    assert "Ask me anything" not in greeting and "say `help`" in greeting  # offline
    prompts = emulator.assistant_threads[(dm, thread)]["prompts"]
    assert [p["title"] for p in prompts][:1] == ["ask: What time is it for Dev in Dubai?"]
    for prompt in prompts:
        fresh = await actions.start_assistant(user="U0SAM")
        await actions.settle()
        await actions.say(user="U0SAM", channel=dm, thread_ts=fresh, text=prompt["message"])
        await actions.settle()
        answer = [m for m in replies(sandbox, dm, fresh) if m.get("bot_id")][-1]
        assert CANNED not in str(answer["text"]), (prompt, answer["text"])


async def test_summarize_this_thread_offline(sandbox: RunningSandbox) -> None:
    actions = sandbox.actions
    root = await actions.say(
        user="U0PRIYA", channel="C0PAYMENTS", text="The EUR/GBP rate is from yesterday."
    )
    for user, text in [
        ("U0DEV", "The FX job failed at 06:00: the provider rotated its API key."),
        ("U0MARTA", "Updated the key and re-ran the job; rates are current now."),
    ]:
        await actions.say(user=user, channel="C0PAYMENTS", text=text, thread_ts=str(root["ts"]))
    await actions.say(
        user="U0SAM",
        channel="C0PAYMENTS",
        text="@switchboard summarize this thread",
        thread_ts=str(root["ts"]),
    )
    await actions.settle()
    answer = str(replies(sandbox, "C0PAYMENTS", str(root["ts"]))[-1]["text"])
    assert answer.startswith("(offline model) Summary of 4 messages"), answer
    assert "rotated its API key" in answer


async def test_the_assistant_digest_does_not_digest_the_dm(sandbox: RunningSandbox) -> None:
    actions, emulator = sandbox.actions, sandbox.emulator
    thread = await actions.start_assistant(user="U0SAM", context_channel="C0PAYALERTS")
    await actions.settle()
    dm = emulator.dm_of("U0SAM")
    await actions.say(user="U0SAM", channel=dm, thread_ts=thread, text="digest")
    await actions.settle()
    asked = str([m for m in replies(sandbox, dm, thread) if m.get("bot_id")][-1]["text"])
    assert asked.startswith("Which channel should I digest?")
    await actions.say(
        user="U0SAM", channel=dm, thread_ts=thread, text="digest #payments-alerts 12h"
    )
    await actions.settle()
    digest = str([m for m in replies(sandbox, dm, thread) if m.get("bot_id")][-1]["text"])
    assert "Digest of #payments-alerts" in digest
    # one message count in the post, and times with their zone named
    summary, numbers = digest.split("By the numbers")
    assert re.findall(r"\b\d+ messages\b", summary) == [], summary
    assert len(re.findall(r"\b\d+ messages:", numbers)) == 1
    assert "(times in America/New_York)" in digest


async def test_run_now_note_renders_the_channel(sandbox: RunningSandbox) -> None:
    actions, emulator = sandbox.actions, sandbox.emulator
    await actions.command(
        user="U0SAM",
        channel="C0PAYALERTS",
        text="/switchboard schedule digest #payments-alerts every weekday at 9:00",
    )
    await actions.command(user="U0SAM", channel="C0PAYALERTS", text="/switchboard schedules")
    listing = emulator.visible_ephemeral("U0SAM")[-1]
    run_now = next(
        e
        for b in listing["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["text"]["text"] == "Run now"
    )

    def posted() -> list[dict[str, object]]:
        return [m for m in emulator.messages["C0PAYALERTS"] if m.get("bot_id")]

    before = len(posted())
    await actions.click(
        user="U0SAM",
        channel="C0PAYALERTS",
        message_ts=str(listing["ts"]),
        action_id=run_now["action_id"],
        block_id=next(b["block_id"] for b in listing["blocks"] if run_now in b.get("elements", [])),
    )
    await actions.settle()
    notes = [str(m) for m in emulator.visible_ephemeral("U0SAM") if "Running `" in str(m)]
    assert notes and "<#C0PAYALERTS>" in notes[-1] and "&lt;#C0PAYALERTS" not in notes[-1]
    # Settled means the firing the click asked for has run, not merely been asked for.
    assert len(posted()) == before + 1, posted()[before:]


async def test_schedule_modal_has_no_silent_skill_and_saves_with_a_channel(
    sandbox: RunningSandbox,
) -> None:
    actions, emulator = sandbox.actions, sandbox.emulator
    await actions.command(user="U0SAM", channel="C0PAYALERTS", text="/switchboard schedule")
    await actions.settle()
    modal = emulator.open_modal("U0SAM")
    assert modal is not None
    skill = next(b for b in modal["blocks"] if b["block_id"] == "skill")["element"]
    assert "initial_option" not in skill
    # Nothing chosen: each problem under its own field.
    result = await actions.submit(user="U0SAM", view_id=str(modal["id"]), values={})
    assert result["closed"] is False
    assert {"skill", "when"} <= set(result["errors"])
    values = {
        "skill": {"skill": "digest"},
        "channel": {"channel": "C0PAYALERTS"},
        "when": {"when": "every weekday at 9:00"},
        "tz": {"tz": "America/New_York"},
    }
    bad = await actions.submit(
        user="U0SAM", view_id=str(modal["id"]), values={**values, "tz": {"tz": "Mars/Olympus"}}
    )
    assert list(bad["errors"]) == ["tz"]
    saved = await actions.submit(user="U0SAM", view_id=str(modal["id"]), values=values)
    assert saved == {"closed": True, "errors": {}}
    await actions.settle()
    assert any("Scheduled *digest*" in str(m["text"]) for m in emulator.visible_ephemeral("U0SAM"))
