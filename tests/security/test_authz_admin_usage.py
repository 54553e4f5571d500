"""``/switchboard admin usage`` shows who used what and what it cost: admins only.

The report names people, channels and spend, so a person outside
SWITCHBOARD_ADMIN_USERGROUP who asks for it (any spelling of the arguments) gets the
refusal and not one number, name or channel of the report; without an admin group the
command is off for everyone. Positive control: an admin, in the same workspace after the
same runs, gets the report. Both backends.
"""

from __future__ import annotations

import logging

import pytest
from langchain_core.messages import AIMessage

from tests.bot.conftest import BotEnv, BotFactory
from tests.fakes.chat import ScriptedChatModel

REFUSAL = "Only members of <!subteam^S0LEADS> can use admin commands."


async def bot_with_runs(make_bot: BotFactory, **settings: str) -> BotEnv:
    model = ScriptedChatModel(
        [],
        default=AIMessage(
            content="Done.",
            usage_metadata={"input_tokens": 1234, "output_tokens": 56, "total_tokens": 1290},
        ),
    )
    env = await make_bot({"offline": model}, SWITCHBOARD_USER_RATE="off", **settings)
    await env.mention("ask what changed?", user="U0DEV", channel="C0PAYMENTS")
    await env.idle()
    return env


def leaked(text: str) -> list[str]:
    return [
        needle
        for needle in ("1,234", "1234", "U0DEV", "C0PAYMENTS", "ask", "$", "run")
        if needle in text
    ]


@pytest.mark.parametrize("args", ["usage", "usage --days 30", "USAGE --days=1", "usage --days x"])
async def test_a_non_admin_gets_the_refusal_and_nothing_of_the_report(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture, args: str
) -> None:
    env = await bot_with_runs(make_bot, SWITCHBOARD_ADMIN_USERGROUP="S0LEADS")
    with caplog.at_level(logging.WARNING, logger="switchboard"):
        response = await env.command(f"admin {args}", user="U0SAM")  # not in S0LEADS
    assert response.status_code == 200
    body = response.json()
    assert body == {"response_type": "ephemeral", "text": REFUSAL}
    assert leaked(body["text"]) == []
    assert "admin command refused for U0SAM" in caplog.text
    # Nothing reached the channel or a DM either.
    assert not [c for c in env.slack.calls("chat.postEphemeral") if "1,234" in str(c.args)]
    assert not [c for c in env.slack.calls("chat.postMessage") if "1,234" in str(c.args)]

    # Positive control: an admin asking the same gets the report.
    report = (await env.command("admin usage", user="U0CAROL")).json()["text"]
    assert "1,234 in / 56 out tokens" in report and "<@U0DEV>" in report
    assert "<#C0PAYMENTS>" in report and "*ask*" in report


async def test_without_an_admin_group_usage_is_off_for_everyone(make_bot: BotFactory) -> None:
    env = await bot_with_runs(make_bot)  # no SWITCHBOARD_ADMIN_USERGROUP
    for user in ("U0SAM", "U0CAROL"):
        text = (await env.command("admin usage", user=user)).json()["text"]
        assert text == "Admin commands are off here: SWITCHBOARD_ADMIN_USERGROUP is not set."
        assert leaked(text) == []
