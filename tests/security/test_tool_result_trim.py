"""Unbounded consumption: a huge tool result cannot flood the model's prompt.

A tool answers 300 KB. The model sees the first ``SWITCHBOARD_TOOL_RESULT_MAX_CHARS`` and a
marker saying what was cut - masked before the cut, so a card number at the edge is not
split out of detection. An approved call's ledger entry keeps the whole (masked) result for
audit. Through the app, on both backends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.models import ToolExecution
from tests.bot.conftest import BotFactory
from tests.bot.test_approvals import click, request_refund
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.http_target import HttpTarget
from tests.security.conftest import tool_results, write_skill

BIG = 300_000
PAN = "4111 1111 1111 1111"

SKILL = """\
name: exports
description: Exports data.
instructions: Export.
tools:
  - name: export_all
    description: Export everything.
    http:
      method: GET
      url: "${CRM_URL}/export"
"""


@pytest.fixture
def crm() -> Iterator[HttpTarget]:
    with HttpTarget() as server:
        # a card number straddles the cut at 5,000 characters
        text = "a" * 4_990 + PAN + "b" * (BIG - 4_990 - len(PAN))
        server.route("GET", "/export", text=text)
        server.route("GET", "/orders/1001", json={"id": "1001", "total": 80, "status": "paid"})
        server.route("POST", "/refunds", json={"refund_id": "RF-77", "log": "z" * BIG})
        yield server


async def test_tool_result_trim_the_model_sees_a_bounded_result_with_a_marker(
    make_bot: BotFactory, crm: HttpTarget, tmp_path: Path
) -> None:
    write_skill(tmp_path / "skills", SKILL)
    model = ScriptedChatModel([tool_call("export_all"), reply("Exported.")])
    env = await make_bot(
        {"offline": model},
        skills_env={"CRM_URL": crm.base_url},
        SWITCHBOARD_SKILLS_DIR=str(tmp_path / "skills"),
        SWITCHBOARD_HTTP_ALLOWED_HOSTS=crm.base_url.removeprefix("http://"),
        SWITCHBOARD_TOOL_RESULT_MAX_CHARS="5000",
    )
    await env.mention("exports everything please")
    await env.idle()

    [result] = tool_results(model)
    text = result.text
    head, _, marker = text.rpartition("\n")
    assert len(head) == 5_000
    assert marker.startswith("[tool result trimmed: showing the first 5,000 of ")
    assert "characters cut" not in marker and " cut." in marker
    assert "4111" not in text  # masked, then cut: no half card number
    assert len(model.calls[-1][-1].text) < 6_000


async def test_tool_result_trim_positive_control_small_results_are_untouched(
    make_bot: BotFactory, crm: HttpTarget, tmp_path: Path
) -> None:
    crm.route("GET", "/export", text="just a little")
    write_skill(tmp_path / "skills", SKILL)
    model = ScriptedChatModel([tool_call("export_all"), reply("Exported.")])
    env = await make_bot(
        {"offline": model},
        skills_env={"CRM_URL": crm.base_url},
        SWITCHBOARD_SKILLS_DIR=str(tmp_path / "skills"),
        SWITCHBOARD_HTTP_ALLOWED_HOSTS=crm.base_url.removeprefix("http://"),
    )
    await env.mention("exports everything please")
    await env.idle()
    [result] = tool_results(model)
    assert result.text == "just a little"


async def test_tool_result_trim_the_ledger_keeps_the_full_result(
    make_bot: BotFactory, crm: HttpTarget
) -> None:
    env, model, _, message = await request_refund(make_bot, crm)
    await click(env, message, "approval_approve", "U0CAROL")

    async with env.services.sessions() as session:
        [execution] = (await session.scalars(select(ToolExecution))).all()
    assert execution.state == "succeeded"
    assert execution.result is not None and len(execution.result) > BIG
    assert execution.result.endswith('"}')
    shown = [m.text for m in tool_results(model) if "RF-77" in m.text]
    assert shown and all(len(text) < 25_000 for text in shown)
