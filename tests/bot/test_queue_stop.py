"""The Stop button: who may press it, and what the conversation looks like afterwards.

Whoever asked, or anyone who has posted in the thread, may stop a turn; anyone else is
refused with a note only they see, and the turn goes on. A Stop during a tool call leaves
no dangling tool call: the next turn's history is one a real provider accepts (every tool
call followed by its result)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from bot.listeners.runs import NOT_YOURS
from bot.views.runs import STOP_ACTION, WORKING_TEXT
from skills.runtime import CANCELLED_TOOL_RESULT
from tests.bot.conftest import TEAM, BotEnv
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.http_target import HttpTarget

LOOKUP = """
name: lookup
description: Look orders up in the CRM.
instructions: You look orders up.
tools:
  - name: find_order
    description: Fetch an order.
    http:
      method: GET
      url: "${CRM_URL}/orders/{order_id}"
    parameters:
      order_id: {type: string, pattern: "^[0-9]+$"}
"""


@pytest.fixture
def crm() -> Iterator[HttpTarget]:
    with HttpTarget() as target:
        target.route("GET", "/orders/1", json={"id": "1", "status": "paid"}, delay=30.0)
        yield target


def _click(value: str, user: str, message_ts: str) -> dict[str, object]:
    return {
        "type": "block_actions",
        "team": {"id": TEAM},
        "user": {"id": user},
        "channel": {"id": "C0GENERAL"},
        "message": {"ts": message_ts},
        "actions": [{"action_id": STOP_ACTION, "value": value, "type": "button"}],
        "trigger_id": "1.2.3",
    }


async def _placeholder(env: BotEnv) -> tuple[str, str]:
    """(job id on the Stop button, placeholder ts) of the first queued turn."""
    [post] = await env.slack.wait_for("chat.postMessage", timeout=10)
    assert post.args["text"] == WORKING_TEXT
    blocks = post.args["blocks"]
    blocks = blocks if isinstance(blocks, list) else json.loads(blocks)
    return str(blocks[-1]["elements"][0]["value"]), str(post.response["ts"])


def _ephemerals(env: BotEnv, user: str) -> list[str]:
    return [
        str(c.args.get("text"))
        for c in env.slack.calls("chat.postEphemeral")
        if c.args.get("user") == user
    ]


async def test_a_thread_participant_may_stop_and_an_outsider_may_not(make_bot: Any) -> None:
    model = ScriptedChatModel(default="too late", delay=30.0)
    env: BotEnv = await make_bot({"offline": model})
    _, root = await env.mention("ask something slow")
    job, placeholder = await _placeholder(env)
    env.slack.add_message("C0GENERAL", "I need this too", user="U0DEV", thread_ts=root)

    outsider = await env.action(_click(job, "U0CAROL", placeholder))  # never posted here
    assert outsider.status_code == 200
    await asyncio.sleep(0.5)
    assert _ephemerals(env, "U0CAROL") == [NOT_YOURS]
    assert env.bot.queue.worker_stats().running == 1  # still answering

    participant = await env.action(_click(job, "U0DEV", placeholder))
    assert participant.status_code == 200
    await env.idle(timeout=15)
    [shown] = env.replies("C0GENERAL", root)
    assert shown["text"] == "Stopped by <@U0DEV>."
    assert _ephemerals(env, "U0DEV") == []


def _provider_accepts(messages: list[BaseMessage]) -> list[str]:
    """What a real provider would reject: a tool call not answered right after it."""
    problems = []
    for index, message in enumerate(messages):
        if isinstance(message, AIMessage) and message.tool_calls:
            following = {
                m.tool_call_id
                for m in messages[index + 1 : index + 1 + len(message.tool_calls)]
                if isinstance(m, ToolMessage)
            }
            problems += [c["name"] for c in message.tool_calls if c["id"] not in following]
    return problems


async def test_the_turn_after_a_stop_during_a_tool_call_succeeds(
    make_bot: Any, crm: HttpTarget, tmp_path: Path
) -> None:
    (tmp_path / "lookup.yaml").write_text(LOOKUP)
    model = ScriptedChatModel(
        [tool_call("find_order", order_id="1"), reply("Order 1 is paid, as far as I know.")]
    )
    env: BotEnv = await make_bot(
        {"offline": model},
        skills_env={"CRM_URL": crm.base_url},
        SWITCHBOARD_SKILLS_DIR=str(tmp_path),
        SWITCHBOARD_HTTP_ALLOWED_HOSTS=crm.base_url.removeprefix("http://"),
    )
    _, root = await env.mention("lookup order 1")
    job, placeholder = await _placeholder(env)
    for _ in range(200):  # the tool call has reached the CRM and hangs there
        if crm.requests:
            break
        await asyncio.sleep(0.05)
    assert crm.requests
    await env.action(_click(job, "U0SAM", placeholder))
    await env.idle(timeout=15)
    assert [m["text"] for m in env.replies("C0GENERAL", root)] == ["Stopped by <@U0SAM>."]

    _, _ = await env.mention("lookup how is order 1 now?", thread_ts=root)
    await env.idle(timeout=20)
    second = model.calls[-1]
    results = [m for m in second if isinstance(m, ToolMessage)]
    print(
        f"after Stop: model turns={len(model.calls)}; tool results in the next turn="
        f"{[str(m.content)[-90:] for m in results]}"
    )
    assert len(model.calls) == 2
    assert _provider_accepts(second) == []
    assert any(CANCELLED_TOOL_RESULT in str(m.content) for m in results)  # (wrapped as untrusted)
    answers = [m["text"] for m in env.answered_replies("C0GENERAL", root)]
    assert answers[-1] == "Order 1 is paid, as far as I know."
