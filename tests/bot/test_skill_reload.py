"""A reloaded spec takes effect in the Slack app too: a user group that only the edited
spec names is looked up, so its members may use the skill (issue 16, item 7)."""

from __future__ import annotations

from pathlib import Path

from tests.bot.conftest import BotFactory

SPEC = """\
name: notes
version: '{version}'
description: Answer questions about the team's notes.
instructions: Answer from the notes.
access:
  usergroups: [{group}]
"""


async def test_a_group_added_by_a_reloaded_spec_admits_its_members(
    make_bot: BotFactory, tmp_path: Path
) -> None:
    make_bot.slack.add_usergroup("S0NOTES", "notes-team", ["U0SAM"])
    spec = tmp_path / "notes.yaml"
    spec.write_text(SPEC.format(version="1", group="S0LEADS"))
    env = await make_bot(SWITCHBOARD_SKILLS_DIR=str(tmp_path))

    await env.command("notes what changed?", user="U0SAM")
    await env.idle()
    refused = (await env.command("notes what changed?", user="U0SAM")).json()
    assert "can't use `notes`" in refused["text"]  # Sam is not a lead

    spec.write_text(SPEC.format(version="2", group="S0NOTES"))
    status = env.services.reloader.reload()
    assert status.outcome == "applied" and status.changed == ("notes v1 → v2",)

    before = len(env.answers())
    _, ts = await env.mention("notes what changed?", user="U0SAM", channel="C0GENERAL")
    await env.idle()
    texts = env.answer_texts()[before:]
    assert texts and not any("can't use" in t for t in texts), texts
    runs = await env.services.runs.for_thread(f"T0FAKE:C0GENERAL:{ts}")
    assert [r.skill_version for r in runs] == ["2"]
