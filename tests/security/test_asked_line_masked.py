"""The "<@user> asked `/switchboard …`" line above a slash-command answer is built from the
person's raw text: a card number, IBAN or e-mail in it must be masked there too."""

from __future__ import annotations

import json

from tests.bot.conftest import BotFactory
from tests.fakes.chat import ScriptedChatModel, reply

PAN = "4111 1111 1111 1111"
EMAIL = "ana.lopez@example.com"


async def test_the_asked_line_masks_what_was_asked(make_bot: BotFactory) -> None:
    env = await make_bot({"offline": ScriptedChatModel([reply("Noted.")])})
    await env.command(f"ask refund card {PAN} for {EMAIL}")
    await env.idle()
    posted = json.dumps(env.slack.messages("C0GENERAL"))
    assert "asked `/switchboard ask refund card" in posted  # the line is there...
    assert "4111" not in posted.replace("****1111", "")  # ...without the number
    assert "1111 1111 1111" not in posted
    assert EMAIL not in posted


async def test_positive_control_plain_text_is_shown(make_bot: BotFactory) -> None:
    env = await make_bot({"offline": ScriptedChatModel([reply("Noted.")])})
    await env.command("ask refund order 1001")
    await env.idle()
    posted = json.dumps(env.slack.messages("C0GENERAL"))
    assert "asked `/switchboard ask refund order 1001`" in posted
