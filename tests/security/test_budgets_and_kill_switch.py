"""Unbounded consumption: a skill's daily token budget, and the admins' kill switch.

A skill that burns through its budget refuses new runs with a clear message (and a
metric) until midnight UTC. An admin can switch a misbehaving skill off for everyone from
Slack or the CLI; a non-admin cannot; every replica honours it within seconds. Through the
app, on both backends.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage
from typer.testing import CliRunner

from skills.spec import SpecValidationError, load_spec_text
from switchboard.cli import app as cli
from tests.bot.conftest import BotEnv, BotFactory
from tests.fakes.chat import ScriptedChatModel
from tests.security.conftest import write_skill

BUDGETED = """\
name: reports
description: Writes long reports.
instructions: Write the report.
budget: {{daily_tokens: {tokens}}}
"""


def costly(total: int) -> AIMessage:
    return AIMessage(
        content="Report done.",
        usage_metadata={"input_tokens": total - 10, "output_tokens": 10, "total_tokens": total},
    )


def notes(env: BotEnv, user: str = "U0SAM") -> list[str]:
    return [
        str(c.args.get("text"))
        for c in env.slack.calls("chat.postEphemeral")
        if c.ok and c.args.get("user") == user
    ]


def metric(env: BotEnv, skill: str, reason: str) -> float:
    value = env.bot.metrics.registry.get_sample_value(
        "switchboard_skill_refusals_total", {"skill": skill, "reason": reason}
    )
    return value or 0.0


async def budget_bot(
    make_bot: BotFactory, tmp_path: Path, tokens: int
) -> tuple[BotEnv, ScriptedChatModel]:
    write_skill(tmp_path / "skills", BUDGETED.format(tokens=tokens))
    model = ScriptedChatModel([], default=costly(600))
    env = await make_bot(
        {"offline": model},
        SWITCHBOARD_SKILLS_DIR=str(tmp_path / "skills"),
        SWITCHBOARD_USER_RATE="off",
    )
    return env, model


async def test_budgets_a_skill_over_its_daily_budget_refuses_new_runs(
    make_bot: BotFactory, tmp_path: Path
) -> None:
    env, model = await budget_bot(make_bot, tmp_path, tokens=1000)
    for _ in range(4):
        await env.mention("reports the weekly report")
        await env.idle()

    assert len(model.calls) == 2  # 600, then 1200 >= 1000: the third and fourth are refused
    refusals = notes(env)
    assert len(refusals) == 2
    assert refusals[0].startswith("`reports` has used its daily budget of 1,000 tokens.")
    assert "available again at 00:00 UTC (in " in refusals[0]
    assert metric(env, "reports", "budget") == 2


async def test_budgets_positive_control_under_budget_runs(
    make_bot: BotFactory, tmp_path: Path
) -> None:
    env, model = await budget_bot(make_bot, tmp_path, tokens=100_000)
    for _ in range(4):
        await env.mention("reports the weekly report")
        await env.idle()
    assert len(model.calls) == 4
    assert notes(env) == []


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ("{daily_tokens: 0}", "reports.yaml:4 budget.daily_tokens: must be at least 1, got 0"),
        ("{daily: 5}", "reports.yaml:4 budget.daily: unknown key; expected one of: daily_tokens"),
        (
            '{daily_tokens: "lots"}',
            "reports.yaml:4 budget.daily_tokens: expected an integer (got a string)",
        ),
    ],
)
def test_budgets_bad_budget_is_a_validation_error(budget: str, message: str) -> None:
    text = BUDGETED.replace("{{daily_tokens: {tokens}}}", budget)
    with pytest.raises(SpecValidationError) as info:
        load_spec_text(text, filename="reports.yaml", env={})
    assert message in [str(i) for i in info.value.issues]


async def admin_bot(make_bot: BotFactory, model: ScriptedChatModel) -> BotEnv:
    return await make_bot(
        {"offline": model}, SWITCHBOARD_ADMIN_USERGROUP="S0LEADS", SWITCHBOARD_USER_RATE="off"
    )


async def test_kill_switch_only_admins_can_flip_it(make_bot: BotFactory) -> None:
    model = ScriptedChatModel([], default="Sure.")
    env = await admin_bot(make_bot, model)

    refused = (await env.command("admin disable ask", user="U0SAM")).json()["text"]
    assert refused == "Only members of <!subteam^S0LEADS> can use admin commands."
    await env.mention("ask hi", user="U0SAM")
    await env.idle()
    assert len(model.calls) == 1  # still on

    # positive control: Carol is in S0LEADS
    done = (await env.command("admin disable ask runaway costs", user="U0CAROL")).json()
    assert done["text"] == "`ask` is now switched off for everyone until enabled again."
    await env.mention("ask hi again", user="U0SAM")
    await env.idle()
    assert len(model.calls) == 1
    assert notes(env)[-1] == "`ask` is switched off by an admin right now (runaway costs)."
    assert metric(env, "ask", "disabled") == 1
    status = (await env.command("admin status", user="U0CAROL")).json()["text"]
    assert "`ask` switched off by <@U0CAROL>: runaway costs" in status

    back = (await env.command("admin enable ask", user="U0CAROL")).json()["text"]
    assert back == "`ask` is now switched on again."
    await env.mention("ask now?", user="U0SAM")
    await env.idle()
    assert len(model.calls) == 2


async def test_kill_switch_without_an_admin_group_is_off(make_bot: BotFactory) -> None:
    env = await make_bot()
    text = (await env.command("admin disable ask", user="U0CAROL")).json()["text"]
    assert text == "Admin commands are off here: SWITCHBOARD_ADMIN_USERGROUP is not set."


async def test_kill_switch_holds_on_every_replica_within_seconds(make_bot: BotFactory) -> None:
    model_a = ScriptedChatModel([], default="A.")
    model_b = ScriptedChatModel([], default="B.")
    replica_a = await admin_bot(make_bot, model_a)
    replica_b = await admin_bot(make_bot, model_b)
    await replica_b.mention("ask warm up")  # B has read the (empty) switch table
    await replica_b.idle()

    await replica_a.command("admin disable ask", user="U0CAROL")
    loop = asyncio.get_running_loop()
    started = loop.time()
    calls_before = len(model_b.calls)
    while True:
        await replica_b.mention("ask still there?")
        await replica_b.idle()
        if len(model_b.calls) == calls_before:
            break  # refused
        calls_before = len(model_b.calls)
        assert loop.time() - started < 7, "replica B still runs a disabled skill"
        await asyncio.sleep(0.5)
    assert "switched off by an admin" in notes(replica_b)[-1]


async def test_kill_switch_from_the_command_line(
    make_bot: BotFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ScriptedChatModel([], default="Sure.")
    env = await admin_bot(make_bot, model)
    monkeypatch.setenv("DATABASE_URL", make_bot.database_url)
    monkeypatch.setenv("SWITCHBOARD_AUDIT_KEY", "test-audit-key-0123456789abcdef-0123")
    runner = CliRunner()

    result = await asyncio.to_thread(
        runner.invoke, cli, ["skills", "disable", "ask", "--reason", "incident 42"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ask disabled")
    await asyncio.sleep(5.1)  # the gate's refresh interval
    await env.mention("ask hi")
    await env.idle()
    assert model.calls == []
    assert notes(env)[-1] == "`ask` is switched off by an admin right now (incident 42)."

    unknown = await asyncio.to_thread(runner.invoke, cli, ["skills", "disable", "nope"])
    assert unknown.exit_code == 1
    assert "there is no skill named 'nope'" in unknown.output

    result = await asyncio.to_thread(runner.invoke, cli, ["skills", "enable", "ask"])
    assert result.exit_code == 0, result.output
    await asyncio.sleep(5.1)
    await env.mention("ask hi")
    await env.idle()
    assert len(model.calls) == 1
