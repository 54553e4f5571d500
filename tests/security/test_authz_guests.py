"""Finding 6 (medium): guests and external users.

Gina is a multi-channel guest, Eve a Slack Connect user from another organization; both
are in #general and mention the bot, DM it and run a slash command. Every built-in skill is
closed to them unless it opts in: they get a clear message and no model is called. The
positive control is a skill with ``access: {guests: true, external: true}``; and the spec
validation knows the two keys.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from skills.spec import load_spec_dirs
from tests.bot.conftest import BotFactory
from tests.fakes.chat import ScriptedChatModel
from tests.security.conftest import ephemerals

pytestmark = pytest.mark.usefixtures("authz_workspace")

OPEN_SKILL = """
name: lobby
description: Answers visitors' questions about the office.
instructions: You help visitors.
model: lobbymodel
access: {guests: true, external: true}
"""

PEOPLE = {"U0GUEST": "guest accounts", "U0EXT": "people from other organizations"}


@pytest.mark.parametrize("user", sorted(PEOPLE))
async def test_guests_and_external_people_are_refused_every_default_skill(
    make_bot: BotFactory, user: str
) -> None:
    model = ScriptedChatModel(default="(should not be called)")
    env = await make_bot({"offline": model})

    await env.mention("ask what is on the roadmap?", user=user)
    await env.mention("digest", user=user)
    body = (await env.command("summarize #general", user=user)).json()
    skills = (await env.command("skills", user=user)).json()
    await env.idle()

    assert model.calls == []
    shown = ephemerals(env, user)
    assert any(f"`ask` isn't available to {PEOPLE[user]}" in text for text in shown)
    assert any(f"`digest` isn't available to {PEOPLE[user]}" in text for text in shown)
    assert "can't use `summarize`" in body["text"]
    assert "ask" not in skills["text"] and "digest" not in skills["text"]


async def test_positive_control_a_skill_that_opts_in_answers_them(
    make_bot: BotFactory, tmp_path: Path
) -> None:
    (tmp_path / "lobby.yaml").write_text(OPEN_SKILL)
    model = ScriptedChatModel(default="The office opens at 9.")
    env = await make_bot({"lobbymodel": model}, SWITCHBOARD_SKILLS_DIR=str(tmp_path))

    _, guest = await env.mention("lobby when does the office open?", user="U0GUEST")
    _, external = await env.mention("lobby when does the office open?", user="U0EXT")
    await env.idle()

    assert len(model.calls) == 2
    for ts in (guest, external):
        assert env.replies("C0GENERAL", ts)[-1]["text"] == "The office opens at 9."
    # a member uses it too; members never needed the opt-in
    _, member = await env.mention("lobby and on Fridays?", user="U0SAM")
    await env.idle()
    assert env.replies("C0GENERAL", member)[-1]["text"] == "The office opens at 9."


def test_the_spec_knows_the_access_keys_and_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "lobby.yaml").write_text(
        OPEN_SKILL.replace(
            "{guests: true, external: true}", "{guests: yes-please, contractors: true}"
        )
    )
    issues = load_spec_dirs([tmp_path], env={}, include_builtin=False).issues
    text = "\n".join(str(issue) for issue in issues)
    assert f"{tmp_path / 'lobby.yaml'}:6" in text
    assert "access.guests" in text and "access.contractors" in text
    assert "unknown key" in text
