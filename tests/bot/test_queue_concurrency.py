"""A skill's ``concurrency`` policy for a message that arrives while its turn runs:
``enqueue`` (the default: wait, fold — tests/bot/test_queue_receive.py), ``interrupt`` and
``reject``; and the spec error for a bad value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from bot.queueing import STILL_WORKING_TEXT
from skills.spec import SpecValidationError, load_spec_text
from tests.bot.conftest import BotEnv
from tests.fakes.chat import ScriptedChatModel

SPEC = """\
name: slow
description: Answers slowly.
instructions: Answer.
concurrency: {policy}
"""


def test_default_is_enqueue_and_a_bad_value_names_file_line_and_field() -> None:
    plain = load_spec_text(SPEC.replace("concurrency: {policy}\n", ""), filename="s.yaml", env={})
    assert plain.concurrency == "enqueue"
    with pytest.raises(SpecValidationError) as info:
        load_spec_text(SPEC.format(policy="queue"), filename="slow.yaml", env={})
    [issue] = info.value.issues
    assert str(issue).startswith("slow.yaml:4 concurrency: ")
    assert "'enqueue', 'interrupt' or 'reject'" in str(issue)


async def _env(make_bot: Any, tmp_path: Path, policy: str, model: ScriptedChatModel) -> BotEnv:
    (tmp_path / "slow.yaml").write_text(SPEC.format(policy=policy))
    env: BotEnv = await make_bot({"offline": model}, SWITCHBOARD_SKILLS_DIR=str(tmp_path))
    return env


def _asked(model: ScriptedChatModel) -> list[str]:
    """The last human message of each model call."""
    return [
        str([m for m in call if isinstance(m, HumanMessage)][-1].content) for call in model.calls
    ]


async def test_reject_tells_only_the_sender_and_drops_the_message(
    make_bot: Any, tmp_path: Path
) -> None:
    model = ScriptedChatModel(default="first answer", delay=3.0)
    env = await _env(make_bot, tmp_path, "reject", model)
    _, root = await env.mention("slow first question")
    await env.slack.wait_for("chat.postMessage", timeout=10)  # the first turn is running
    await env.mention("slow second question", thread_ts=root, user="U0SAM")
    await env.idle(timeout=30)
    notes = [c.args for c in env.slack.calls("chat.postEphemeral") if c.args.get("user") == "U0SAM"]
    answers = [m["text"] for m in env.answered_replies("C0GENERAL", root)]
    print(f"reject: model turns={len(model.calls)} answers={answers} notes={len(notes)}")
    assert [n["text"] for n in notes] == [STILL_WORKING_TEXT]
    assert notes[0]["thread_ts"] == root
    assert len(model.calls) == 1 and answers == ["first answer"]


async def test_interrupt_cancels_the_running_turn_and_answers_both_together(
    make_bot: Any, tmp_path: Path
) -> None:
    model = ScriptedChatModel(default="both answered", delay=3.0)
    env = await _env(make_bot, tmp_path, "interrupt", model)
    _, root = await env.mention("slow first question")
    await env.slack.wait_for("chat.postMessage", timeout=10)
    await env.mention("slow actually, also this", thread_ts=root)
    await env.idle(timeout=30)
    answers = [m["text"] for m in env.answered_replies("C0GENERAL", root)]
    asked = _asked(model)
    print(f"interrupt: model turns={len(model.calls)} answers={answers} asked={asked}")
    # the first call was cancelled mid-way (never completed); one turn had both messages
    assert len(model.calls) == 1
    assert "first question" in asked[-1] and "also this" in asked[-1]
    assert answers == ["both answered"]
    assert len(env.replies("C0GENERAL", root)) == 1  # in the first turn's placeholder


async def test_enqueue_keeps_the_running_turn(make_bot: Any, tmp_path: Path) -> None:
    """The positive control of interrupt: the same two messages, the default policy."""
    model = ScriptedChatModel(default="answered", delay=3.0)
    env = await _env(make_bot, tmp_path, "enqueue", model)
    _, root = await env.mention("slow first question")
    await env.slack.wait_for("chat.postMessage", timeout=10)
    await env.mention("slow actually, also this", thread_ts=root)
    await env.idle(timeout=30)
    asked = _asked(model)
    assert len(model.calls) == 2 and "also this" not in asked[0] and "also this" in asked[1]
    assert [m["text"] for m in env.answered_replies("C0GENERAL", root)] == ["answered"] * 2
