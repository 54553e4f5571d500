"""What a newcomer meets first, through signed Slack payloads (issue 12).

Help that helps, a canned reply that points at something that works, and approvals that
never mislead: a call that cannot run is never put in front of approvers, a decided card
says so in its header, a result reads as fields, and App Home follows decisions made there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langchain_core.messages import ToolMessage
from sqlalchemy import select

from storage.models import ApprovalRequestRow
from tests.bot.conftest import BotFactory
from tests.bot.test_approvals import (  # noqa: F401 - crm is a fixture
    PAYOUTS,
    allow,
    buttons,
    card,
    click,
    click_payload,
    crm,
    posts,
    request_refund,
)
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.http_target import HttpTarget

# -- 1. help ---------------------------------------------------------------------------------


async def test_help_hi_and_what_can_you_do_get_the_real_help(make_bot: BotFactory) -> None:
    env = await make_bot()
    for text in ("help", "hi", "what can you do?"):
        _, ts = await env.mention(text, channel="C0PAYMENTS")
        await env.idle()
        [answer] = env.replies("C0PAYMENTS", ts)
        shown = answer["text"]
        assert shown.startswith("*Hi, I'm Switchboard*"), shown
        assert "I understood" not in shown
        # the skills this person may use here, each with an example to send
        for skill in ("ask", "summarize", "digest"):
            assert f"*{skill}*" in shown
        assert "`ask What time is it for Dev in Dubai?`" in shown
        # offline: what that means, and how to switch, in one line
        assert "SWITCHBOARD_MODEL=openai:" in shown
    # In a DM too, and without running a skill (no run record, no model call).
    await env.message("help", channel="D0SAM", channel_type="im")
    await env.idle()
    dm = [c.args for c in env.slack.calls("chat.postMessage") if c.args["channel"] == "D0SAM"]
    assert dm and "Send me one of these" in dm[-1]["text"]


async def test_help_is_not_shown_for_a_real_question(make_bot: BotFactory) -> None:
    model = ScriptedChatModel([reply("Help with refunds: ask the support team.")])
    env = await make_bot({"offline": model})
    _, ts = await env.mention("ask how do I help a customer with a refund?")
    await env.idle()
    assert [a["text"] for a in env.replies("C0GENERAL", ts)] == [
        "Help with refunds: ask the support team."
    ]


# -- 3. the canned reply ---------------------------------------------------------------------


async def test_canned_reply_suggests_a_command_that_works_in_that_thread(
    make_bot: BotFactory,
) -> None:
    env = await make_bot()
    _, ts = await env.mention("ask tell me a joke")
    await env.idle()
    [canned] = env.replies("C0GENERAL", ts)
    assert "Try replying `slack_read_thread` here" in canned["text"]
    assert "thread_ts=" not in canned["text"]  # no ids a person cannot see
    assert canned["text"].splitlines()[-1].startswith("For real answers, start Switchboard")
    # ...and the suggestion works right there, as a reply in the thread.
    await env.message("slack_read_thread", thread_ts=ts)
    await env.idle()
    follow_up = env.replies("C0GENERAL", ts)[-1]["text"]
    assert follow_up.startswith("(offline model) Summary of"), follow_up


# -- 6. arguments checked before a card ------------------------------------------------------


async def test_a_call_that_cannot_run_never_reaches_approvers(
    make_bot: BotFactory,
    crm: HttpTarget,  # noqa: F811 - the fixture
) -> None:
    env = await make_bot(skills_env={"CRM_URL": crm.base_url}, **allow(crm))
    _, ts = await env.mention(
        "refunds issue_refund order_id=1001 amount=9999", channel="C0PAYMENTS"
    )
    await env.idle()
    shown = json.dumps([m.get("blocks") or m["text"] for m in env.replies("C0PAYMENTS", ts)])
    assert "Approval needed" not in shown and "approval_approve" not in shown
    assert "not sent for approval" in shown and "5000" in shown
    async with env.services.sessions() as session:
        assert list(await session.scalars(select(ApprovalRequestRow))) == []
    assert posts(crm) == []


async def test_the_model_hears_why_and_can_correct_itself(
    make_bot: BotFactory,
    crm: HttpTarget,  # noqa: F811
) -> None:
    model = ScriptedChatModel(
        [
            tool_call("issue_refund", order_id="1001", amount=9999),
            tool_call("issue_refund", order_id="1001", amount=5000),
            reply("Sent for approval."),
        ]
    )
    env, model, _ts, message = await request_refund(make_bot, crm, model=model)
    errors = [m for m in model.calls[1] if isinstance(m, ToolMessage)]
    assert errors and "9999 is greater than the maximum of 5000" in str(errors[-1].content)
    async with env.services.sessions() as session:  # only the valid call became a request
        rows = list(await session.scalars(select(ApprovalRequestRow)))
    assert [json.loads(r.args_json)["amount"] for r in rows] == [5000]
    assert "5000" in json.dumps(message["blocks"]) and "9999" not in json.dumps(message["blocks"])


# -- 7. a decided card says so -----------------------------------------------------------------


def header(message: dict[str, Any]) -> str:
    return str(next(b for b in message["blocks"] if b["type"] == "header")["text"]["text"])


async def test_approved_card_heading_count_and_readable_result(
    make_bot: BotFactory,
    crm: HttpTarget,  # noqa: F811
) -> None:
    env, _, _, message = await request_refund(make_bot, crm)
    assert header(message) == "🔒 Approval needed"
    await click(env, message, "approval_approve", "U0CAROL")
    done = env.slack.message("C0PAYMENTS", message["ts"])
    assert header(done) == "✅ Approved · 1 of 1"
    shown = json.dumps(done["blocks"])
    assert "1 of 1 approval" in shown and "0 of 1" not in shown
    assert buttons(done) == []
    # the CRM's JSON answer as fields, not a dump
    fields = [
        f["text"] for b in done["blocks"] if b["type"] == "section" for f in b.get("fields", [])
    ]
    assert "*Refund id*\nRF-77" in fields and "*Status*\nprocessed" in fields
    assert '{"refund_id"' not in shown


async def test_rejected_card_heading(make_bot: BotFactory, crm: HttpTarget) -> None:  # noqa: F811
    env, _, _, message = await request_refund(make_bot, crm)
    payload = click_payload(message, "approval_reject", "U0CAROL")
    payload.pop("trigger_id")  # no modal: rejected at once
    await env.action(payload)
    await env.idle()
    assert header(env.slack.message("C0PAYMENTS", message["ts"])) == "❌ Rejected"


async def test_app_home_is_published_again_after_a_decision_taken_there(
    make_bot: BotFactory,
    crm: HttpTarget,  # noqa: F811
) -> None:
    env, _, _, _message = await request_refund(make_bot, crm)
    await env.event({"type": "app_home_opened", "user": "U0CAROL", "tab": "home", "channel": "D0X"})
    home = env.slack.home_view("U0CAROL")
    assert home is not None and "Waiting for you (1)" in json.dumps(home)
    approve = next(
        e
        for b in home["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e.get("action_id") == "approval_approve"
    )
    payload = {
        "type": "block_actions",
        "team": {"id": "T0FAKE"},
        "user": {"id": "U0CAROL"},
        "trigger_id": "trigger-home",
        "view": {**home, "type": "home"},
        "container": {"type": "view", "view_id": home.get("id", "V0HOME")},
        "actions": [{**approve, "block_id": "list", "action_ts": "1.1"}],
    }
    assert (await env.action(payload)).status_code == 200
    await env.idle()
    assert len(posts(crm)) == 1
    again = json.dumps(env.slack.home_view("U0CAROL"))
    assert "Waiting for you (0)" in again and "approval_approve" not in again


# -- 8. the edit note stays with the model -------------------------------------------------------


async def test_after_an_edit_the_reply_shows_the_edited_result_not_the_note(
    make_bot: BotFactory,
    crm: HttpTarget,  # noqa: F811
    tmp_path: Path,
) -> None:
    (tmp_path / "payouts.yaml").write_text(PAYOUTS.replace("quorum: 2", "quorum: 1"))
    env = await make_bot(
        skills_env={"CRM_URL": crm.base_url}, SWITCHBOARD_SKILLS_DIR=str(tmp_path), **allow(crm)
    )
    _, ts = await env.mention(
        "payouts release_payout payout_id=P1 amount=900", channel="C0PAYMENTS"
    )
    await env.idle()
    message = card(env, ts)
    await click(env, message, "approval_edit", "U0CAROL")
    view = env.slack.calls("views.open")[-1].args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    values = {
        "arg:payout_id": {"value": {"type": "plain_text_input", "value": "P1"}},
        "arg:amount": {"value": {"type": "plain_text_input", "value": "450"}},
    }
    submission = {
        "type": "view_submission",
        "team": {"id": "T0FAKE"},
        "user": {"id": "U0CAROL"},
        "view": {**view, "id": "V9", "state": {"values": values}},
    }
    assert (await env.action(submission)).status_code == 200
    await env.idle()
    edited = env.slack.message("C0PAYMENTS", message["ts"])
    await click(env, edited, "approval_approve", "U0DEV")
    assert [p.json()["amount"] for p in posts(crm, "/payouts")] == [450]
    answer = env.replies("C0PAYMENTS", ts)[-1]["text"]
    assert "reviewer replaced" not in answer and "re-issue" not in answer
    assert answer.startswith("(offline model) release_payout (as edited by the reviewer) returned:")
    assert "released" in answer
