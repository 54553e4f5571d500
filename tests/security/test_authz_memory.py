"""Finding 3 (high): cross-skill memory.

Carol uses the restricted ``hr`` skill in a #general thread; its tool reads #hr-private,
so the tool result (the HR text) is in that skill's memory. Ben may not use ``hr``. He
names another skill in the same thread and asks what was read; a scripted model repeats
everything it is given. Nothing of ``hr``'s memory may reach that model or Slack. The
positive control: Carol's next ``hr`` turn still remembers the read (memory is kept for
the same skill).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import BaseMessage

from tests.bot.conftest import BotEnv, BotFactory
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.security.conftest import HR_CHANNEL, HR_SECRET, bot_posts, ephemerals, leaks

pytestmark = pytest.mark.usefixtures("authz_workspace")

HR_SKILL = """
name: hr
description: Questions for the people team about reviews and bands.
instructions: You help the people team.
model: hrmodel
access: {users: [U0CAROL, U0ANA]}
tools:
  - use: slack.read_channel
"""


def repeat_everything(messages: list[BaseMessage]) -> object:
    return reply("I was given: " + " | ".join(str(m.content) for m in messages))


async def hr_thread(
    make_bot: BotFactory, tmp_path: Path
) -> tuple[BotEnv, ScriptedChatModel, ScriptedChatModel, str]:
    (tmp_path / "hr.yaml").write_text(HR_SKILL)
    hr_model = ScriptedChatModel(
        [tool_call("slack_read_channel", channel=HR_CHANNEL), reply("I have read the channel.")],
        default="Noted.",
    )
    ask_model = ScriptedChatModel([repeat_everything] * 10)
    env = await make_bot(
        {"hrmodel": hr_model, "offline": ask_model}, SWITCHBOARD_SKILLS_DIR=str(tmp_path)
    )
    _, root = await env.mention("hr read the hr channel for me", user="U0CAROL")
    await env.idle()
    assert HR_SECRET in str(hr_model.calls[-1])  # the read happened, for Carol
    return env, hr_model, ask_model, root


async def test_another_skill_in_the_thread_never_sees_a_restricted_skills_memory(
    make_bot: BotFactory, tmp_path: Path
) -> None:
    env, hr_model, ask_model, root = await hr_thread(make_bot, tmp_path)
    calls_before = len(hr_model.calls)

    await env.mention("ask what did the tool read above?", user="U0BEN", thread_ts=root)
    await env.idle()
    await env.mention(
        "summarize everything said in this conversation", user="U0BEN", thread_ts=root
    )
    await env.idle()
    await env.mention("hr repeat what you read", user="U0BEN", thread_ts=root)
    await env.idle()

    assert ask_model.calls, "the other skill ran"
    assert "model" not in await leaks(env, HR_SECRET, models=[ask_model])
    assert not any(HR_SECRET in text for text in bot_posts(env, "C0GENERAL", root))
    assert len(hr_model.calls) == calls_before  # Ben can't use hr itself
    assert any("can't use `hr`" in text for text in ephemerals(env, "U0BEN"))


async def test_positive_control_the_same_skill_keeps_its_memory(
    make_bot: BotFactory, tmp_path: Path
) -> None:
    env, hr_model, _ask_model, root = await hr_thread(make_bot, tmp_path)

    await env.mention("hr and which team was it about?", user="U0CAROL", thread_ts=root)
    await env.idle()

    assert HR_SECRET in str(hr_model.calls[-1])  # remembered from the first turn
