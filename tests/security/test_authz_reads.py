"""Finding 1 (critical): reads on behalf of non-members.

A scripted model does what a prompt-injected or simply obliging model would: it calls the
Slack tools with the id of someone else's DM or of a private channel the bot is in, and
posts whatever it got back. Ben is in neither; Ana is in both. Ben's turn must leave the
text nowhere (model requests, Slack posts, logs, SQL rows, Redis); Ana's shows the same
search finds it when the read is allowed.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import BaseMessage, ToolMessage

from tests.bot.conftest import BotEnv, BotFactory
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.slack_api import FakeSlackApi
from tests.security.conftest import (
    ANA_DM,
    DM_SECRET,
    HR_CHANNEL,
    HR_SECRET,
    audit_events,
    bot_posts,
    echo_tool_result,
    leaks,
)

pytestmark = pytest.mark.usefixtures("authz_workspace")


async def ask(
    make_bot: BotFactory, user: str, tool: str, **args: Any
) -> tuple[BotEnv, ScriptedChatModel, str]:
    """``user`` asks in #general; the model calls ``tool`` with ``args`` and echoes it."""
    model = ScriptedChatModel([tool_call(tool, **args), echo_tool_result])
    env = await make_bot({"offline": model})
    _, ts = await env.mention(f"ask use {tool} and tell me what it says", user=user)
    await env.idle()
    return env, model, ts


def tool_results(model: ScriptedChatModel) -> list[ToolMessage]:
    return [m for call in model.calls for m in call if isinstance(m, ToolMessage)]


# --------------------------------------------------------------------------- DMs


async def test_another_persons_dm_is_never_read_for_them(
    make_bot: BotFactory, all_logs: pytest.LogCaptureFixture
) -> None:
    env, model, ts = await ask(make_bot, "U0BEN", "slack_read_channel", channel=ANA_DM)

    [result] = tool_results(model)
    assert result.status == "error"
    assert "someone else's direct-message conversation" in str(result.content)
    assert await leaks(env, DM_SECRET, models=[model], caplog=all_logs) == set()
    assert "someone else's direct-message" in bot_posts(env, "C0GENERAL", ts)[-1]
    [refused] = await audit_events(env, "refused-read")
    assert refused.actor == "U0BEN" and ANA_DM in refused.summary
    assert DM_SECRET not in refused.summary
    # nothing of the DM was even fetched
    assert not [c for c in env.slack.calls("conversations.history") if c.args["channel"] == ANA_DM]


async def test_positive_control_a_person_may_have_their_own_dm_read(
    make_bot: BotFactory, all_logs: pytest.LogCaptureFixture
) -> None:
    env, model, _ = await ask(make_bot, "U0ANA", "slack_read_channel", channel=ANA_DM)

    [result] = tool_results(model)
    assert result.status == "success"
    assert {"model", "slack"} <= await leaks(env, DM_SECRET, models=[model], caplog=all_logs)
    assert await audit_events(env, "refused-read") == []


# --------------------------------------------------------------------------- private channels


def _hr_root(slack: FakeSlackApi) -> str:
    return str(slack.messages(HR_CHANNEL)[0]["ts"])


def _echo_prompt(messages: list[BaseMessage]) -> Any:
    """The digest's model step: repeat the whole prompt (the transcript) into the answer."""
    return reply(" ".join(str(m.content) for m in messages))


async def _attack(
    make_bot: BotFactory, attack: str, user: str
) -> tuple[BotEnv, ScriptedChatModel, list[str]]:
    """Run one way of reading #hr-private as ``user``; returns what the bot posted."""
    if attack == "digest":
        model = ScriptedChatModel([_echo_prompt])
        env = await make_bot({"offline": model})
        response = await env.command(f"digest <#{HR_CHANNEL}|hr-private> 24h", user=user)
        assert response.status_code == 200
        await env.idle()
        return env, model, bot_posts(env, "C0GENERAL")
    if attack == "read_thread":
        args = {"channel": HR_CHANNEL, "thread_ts": _hr_root(make_bot.slack)}
        env, model, ts = await ask(make_bot, user, "slack_read_thread", **args)
    else:
        env, model, ts = await ask(make_bot, user, "slack_read_channel", channel=HR_CHANNEL)
    return env, model, bot_posts(env, "C0GENERAL", ts)


ATTACKS = ["read_channel", "read_thread", "digest"]


@pytest.mark.parametrize("attack", ATTACKS)
async def test_private_channel_text_never_leaves_a_non_members_turn(
    make_bot: BotFactory, all_logs: pytest.LogCaptureFixture, attack: str
) -> None:
    env, model, posts = await _attack(make_bot, attack, "U0BEN")

    assert await leaks(env, HR_SECRET, models=[model], caplog=all_logs) == set()
    assert "not a member of G0HRPRIV" in posts[-1]
    [refused] = await audit_events(env, "refused-read")
    assert refused.actor == "U0BEN" and HR_CHANNEL in refused.summary
    read = {"conversations.history", "conversations.replies"}
    assert not [
        c for c in env.slack.calls() if c.method in read and c.args["channel"] == HR_CHANNEL
    ]


@pytest.mark.parametrize("attack", ATTACKS)
async def test_positive_control_a_member_may_have_the_private_channel_read(
    make_bot: BotFactory, all_logs: pytest.LogCaptureFixture, attack: str
) -> None:
    env, model, posts = await _attack(make_bot, attack, "U0ANA")

    found = await leaks(env, HR_SECRET, models=[model], caplog=all_logs)
    assert {"model", "slack", "log"} <= found  # the search sees every sink it checks
    assert any(HR_SECRET in post for post in posts)
    assert await audit_events(env, "refused-read") == []


async def test_leaving_the_channel_takes_effect_at_once(make_bot: BotFactory) -> None:
    """The membership cache is invalidated by Slack's member_left_channel event."""
    model = ScriptedChatModel(
        [
            tool_call("slack_read_channel", channel=HR_CHANNEL),
            echo_tool_result,
            tool_call("slack_read_channel", channel=HR_CHANNEL, hours=12),
            echo_tool_result,
        ]
    )
    env = await make_bot({"offline": model})
    _, ts = await env.mention("ask read hr", user="U0ANA")
    await env.idle()
    assert HR_SECRET in bot_posts(env, "C0GENERAL", ts)[-1]

    env.slack.set_members(HR_CHANNEL, ["U0CAROL"])
    await env.event(
        {"type": "member_left_channel", "user": "U0ANA", "channel": HR_CHANNEL, "team": "T0FAKE"}
    )
    _, again = await env.mention("ask read hr again", user="U0ANA")
    await env.idle()
    assert "not a member of G0HRPRIV" in bot_posts(env, "C0GENERAL", again)[-1]
