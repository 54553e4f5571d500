"""Approval flows through signed block_actions payloads, a scripted model and a local
HTTP server standing in for the target system (a CRM)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from langchain_core.messages import ToolMessage
from sqlalchemy import update

from storage.models import AuditEntry
from tests.bot.conftest import TEAM, BotEnv, BotFactory
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.http_target import HttpTarget

PAYOUTS = """
name: payouts
description: Release merchant payouts after two approvals.
instructions: You release payouts.
tools:
  - name: release_payout
    description: Release a payout.
    http:
      method: POST
      url: "${CRM_URL}/payouts"
      json: {payout_id: "{payout_id}", amount: "{amount}"}
    parameters:
      payout_id: {type: string}
      amount: {type: number, maximum: 10000}
    approval:
      approvers: {users: [U0CAROL, U0DEV]}
      quorum: 2
      four_eyes: true
      expires_in: 1h
      allow_edit: true
"""


@pytest.fixture
def crm() -> Iterator[HttpTarget]:
    with HttpTarget() as target:
        target.route("POST", "/refunds", json={"refund_id": "RF-77", "status": "processed"})
        target.route("POST", "/payouts", json={"payout": "released"})
        yield target


def allow(crm: HttpTarget) -> dict[str, str]:
    """The CRM listens on loopback, an internal address: HTTP tools need it allow-listed."""
    return {"SWITCHBOARD_HTTP_ALLOWED_HOSTS": crm.base_url.removeprefix("http://")}


def posts(crm: HttpTarget, path: str = "/refunds") -> list[Any]:
    return [r for r in crm.requests if r.method == "POST" and r.path == path]


async def request_refund(
    make_bot: BotFactory,
    crm: HttpTarget,
    *,
    requester: str = "U0SAM",
    amount: int = 25,
    model: ScriptedChatModel | None = None,
    tmp: Path | None = None,
    text: str = "refunds refund it",
) -> tuple[BotEnv, ScriptedChatModel, str, dict[str, Any]]:
    model = model or ScriptedChatModel(
        [tool_call("issue_refund", order_id="1001", amount=amount), reply("Refund done.")]
    )
    extra = {"SWITCHBOARD_SKILLS_DIR": str(tmp)} if tmp else {}
    env = await make_bot(
        {"offline": model}, skills_env={"CRM_URL": crm.base_url}, **allow(crm), **extra
    )
    _, ts = await env.mention(text, user=requester, channel="C0PAYMENTS")
    await env.idle()
    return env, model, ts, card(env, ts)


def card(env: BotEnv, ts: str) -> dict[str, Any]:
    cards = [
        m
        for m in env.replies("C0PAYMENTS", ts)
        if "Approval needed" in json.dumps(m.get("blocks", []))
    ]
    assert cards, "no approval card in the thread"
    return env.slack.message("C0PAYMENTS", cards[-1]["ts"])


def request_id(message: dict[str, Any]) -> str:
    actions = next(b for b in message["blocks"] if b["type"] == "actions")
    return str(actions["elements"][0]["value"])


def buttons(message: dict[str, Any]) -> list[str]:
    actions = [b for b in message["blocks"] if b["type"] == "actions"]
    return [e["text"]["text"] for b in actions for e in b["elements"]]


def click_payload(message: dict[str, Any], action_id: str, user: str) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": TEAM},
        "user": {"id": user},
        "channel": {"id": "C0PAYMENTS"},
        "trigger_id": f"trigger-{user}",
        "message": message,
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": "C0PAYMENTS"},
        "actions": [
            {
                "action_id": action_id,
                "value": request_id(message),
                "type": "button",
                "block_id": "x",
                "action_ts": "1.1",
            }
        ],
    }


async def click(env: BotEnv, message: dict[str, Any], action_id: str, user: str) -> None:
    response = await env.action(click_payload(message, action_id, user))
    assert response.status_code == 200
    await env.idle()


def ephemerals(env: BotEnv, user: str) -> list[str]:
    return [
        c.args["text"] for c in env.slack.calls("chat.postEphemeral") if c.args.get("user") == user
    ]


async def test_card_shows_the_exact_action(make_bot: BotFactory, crm: HttpTarget) -> None:
    _env, _, _, message = await request_refund(make_bot, crm)
    text = json.dumps(message["blocks"])
    assert buttons(message) == ["Approve", "Reject", "Edit"]  # refunds allows edits
    for expected in (
        "<@U0SAM>",
        "refunds",
        "issue_refund",
        '\\"amount\\": 25',
        "<!date^",
        "<@U0CAROL>",
        "<!subteam^S0LEADS>",
        "0 of 1 approval",
    ):
        assert expected in text, expected
    assert crm.requests == []


async def test_approve_calls_the_target_exactly_once(make_bot: BotFactory, crm: HttpTarget) -> None:
    env, _, ts, message = await request_refund(make_bot, crm)
    await click(env, message, "approval_approve", "U0CAROL")
    sent = posts(crm)
    assert len(sent) == 1
    assert sent[0].json() == {"order_id": "1001", "amount": 25}
    assert sent[0].headers["idempotency-key"] == f"sb-approval-{request_id(message)}"
    updated = env.slack.message("C0PAYMENTS", message["ts"])
    assert buttons(updated) == []
    shown = json.dumps(updated["blocks"])
    assert "Approved by <@U0CAROL>" in shown and "done:" in shown and "RF-77" in shown
    assert env.replies("C0PAYMENTS", ts)[-1]["text"] == "Refund done."
    # Clicking again (a double click, a re-delivery) changes nothing.
    await click(env, message, "approval_approve", "U0CAROL")
    await click(env, message, "approval_approve", "U0DEV")
    assert len(posts(crm)) == 1
    assert "already" in ephemerals(env, "U0DEV")[-1]
    audit = await env.services.audit.for_request(request_id(message))
    assert [a.event for a in audit] == ["requested", "approved", "executed"]


async def test_reject_with_reason(make_bot: BotFactory, crm: HttpTarget) -> None:
    model = ScriptedChatModel(
        [tool_call("issue_refund", order_id="1001", amount=25), reply("OK, I won't refund it.")]
    )
    env, model, ts, message = await request_refund(make_bot, crm, model=model)
    await click(env, message, "approval_reject", "U0CAROL")
    modal = env.slack.calls("views.open")[-1].args
    view = json.loads(modal["view"]) if isinstance(modal["view"], str) else modal["view"]
    submission = {
        "type": "view_submission",
        "team": {"id": TEAM},
        "user": {"id": "U0CAROL"},
        "view": {
            **view,
            "id": "V1",
            "state": {
                "values": {
                    "reason": {"text": {"type": "plain_text_input", "value": "duplicate of RF-70"}}
                }
            },
        },
    }
    assert (await env.action(submission)).status_code == 200
    await env.idle()
    assert posts(crm) == []
    told = [str(m.content) for m in model.calls[-1] if isinstance(m, ToolMessage)]
    assert any("duplicate of RF-70" in t for t in told)
    shown = json.dumps(env.slack.message("C0PAYMENTS", message["ts"])["blocks"])
    assert "Rejected by <@U0CAROL>: duplicate of RF-70" in shown
    assert env.replies("C0PAYMENTS", ts)[-1]["text"] == "OK, I won't refund it."


async def test_requester_cannot_approve_their_own_request(
    make_bot: BotFactory, crm: HttpTarget
) -> None:
    env, _, _, message = await request_refund(make_bot, crm, requester="U0CAROL")
    await click(env, message, "approval_approve", "U0CAROL")
    assert posts(crm) == []
    assert "four-eyes" in ephemerals(env, "U0CAROL")[-1]
    assert buttons(env.slack.message("C0PAYMENTS", message["ts"])) == ["Approve", "Reject", "Edit"]
    audit = await env.services.audit.for_request(request_id(message))
    assert [a.event for a in audit] == ["requested", "refused-click"]


async def test_non_approver_is_refused(make_bot: BotFactory, crm: HttpTarget) -> None:
    env, _, _, message = await request_refund(make_bot, crm)
    await click(env, message, "approval_approve", "U0DEV")
    await click(env, message, "approval_reject", "U0DEV")
    assert posts(crm) == []
    assert all("Only <@U0CAROL>" in t for t in ephemerals(env, "U0DEV"))
    assert env.slack.calls("views.open") == []  # no reject modal for a non-approver
    assert buttons(env.slack.message("C0PAYMENTS", message["ts"])) == ["Approve", "Reject", "Edit"]


async def test_usergroup_member_can_approve(make_bot: BotFactory, crm: HttpTarget) -> None:
    make_bot.slack.add_usergroup("S0LEADS", "leads", ["U0CAROL", "U0DEV"])
    env, _, _, message = await request_refund(make_bot, crm)
    await click(env, message, "approval_approve", "U0DEV")
    assert len(posts(crm)) == 1


async def test_quorum_of_two_distinct_people(
    make_bot: BotFactory, crm: HttpTarget, tmp_path: Path
) -> None:
    (tmp_path / "payouts.yaml").write_text(PAYOUTS)
    model = ScriptedChatModel(
        [tool_call("release_payout", payout_id="P1", amount=900), reply("Released.")]
    )
    env, _, _, message = await request_refund(
        make_bot, crm, model=model, tmp=tmp_path, text="payouts release P1"
    )
    await click(env, message, "approval_approve", "U0CAROL")
    assert "1 of 2 approvals" in json.dumps(
        env.slack.message("C0PAYMENTS", message["ts"])["blocks"]
    )
    await click(env, message, "approval_approve", "U0CAROL")  # the same person twice counts once
    assert posts(crm, "/payouts") == []
    assert "already counted" in ephemerals(env, "U0CAROL")[-1]
    await click(env, message, "approval_approve", "U0DEV")
    assert len(posts(crm, "/payouts")) == 1


async def test_twenty_concurrent_clicks_execute_once(make_bot: BotFactory, crm: HttpTarget) -> None:
    make_bot.slack.add_usergroup("S0LEADS", "leads", ["U0CAROL", "U0DEV"])
    env, _, _, message = await request_refund(make_bot, crm)
    payloads = [
        click_payload(message, "approval_approve", ("U0CAROL", "U0DEV")[i % 2]) for i in range(20)
    ]
    responses = await asyncio.gather(*(env.action(p) for p in payloads))
    assert {r.status_code for r in responses} == {200}
    await env.idle()
    assert len(posts(crm)) == 1


async def test_click_after_a_restart_resumes_the_run(make_bot: BotFactory, crm: HttpTarget) -> None:
    _env, _, ts, message = await request_refund(make_bot, crm)
    # A new process (or another replica) sharing the database and Redis gets the click.
    other = await make_bot(
        {"offline": ScriptedChatModel([reply("Done after the restart.")])},
        skills_env={"CRM_URL": crm.base_url},
        **allow(crm),
    )
    await click(other, message, "approval_approve", "U0CAROL")
    assert len(posts(crm)) == 1
    answers = [m["text"] for m in other.replies("C0PAYMENTS", ts)]
    # The resume is a run-queue job: on a shared (PostgreSQL) queue any replica's worker
    # may run it — the first one's included — but exactly one does, once.
    finished = [text for text in answers if text in {"Done after the restart.", "Refund done."}]
    assert len(finished) == 1 and answers[-1] == finished[0], answers


async def test_expiry_updates_the_card_and_tells_the_requester(
    make_bot: BotFactory, crm: HttpTarget
) -> None:
    model = ScriptedChatModel(
        [
            tool_call("issue_refund", order_id="1001", amount=25),
            reply("The approval expired; nothing was refunded."),
        ]
    )
    env, model, ts, message = await request_refund(make_bot, crm, model=model)
    later = datetime.now(UTC) + timedelta(hours=25)
    with freeze_time(later, tick=True):
        done = await env.bot.approvals.sweep_once()
        assert len(done) == 1
    await click(env, message, "approval_approve", "U0CAROL")  # a later click
    shown = json.dumps(env.slack.message("C0PAYMENTS", message["ts"])["blocks"])
    assert "Expired" in shown and buttons(env.slack.message("C0PAYMENTS", message["ts"])) == []
    assert (
        env.replies("C0PAYMENTS", ts)[-1]["text"] == "The approval expired; nothing was refunded."
    )
    assert any("expired" in str(m.content) for m in model.calls[-1] if isinstance(m, ToolMessage))
    assert "expired" in ephemerals(env, "U0CAROL")[-1]
    assert posts(crm) == []


async def test_edit_makes_a_new_request_that_needs_approval(
    make_bot: BotFactory, crm: HttpTarget, tmp_path: Path
) -> None:
    (tmp_path / "payouts.yaml").write_text(PAYOUTS.replace("quorum: 2", "quorum: 1"))
    model = ScriptedChatModel(
        [tool_call("release_payout", payout_id="P1", amount=900), reply("Released.")]
    )
    env, _, _, message = await request_refund(
        make_bot, crm, model=model, tmp=tmp_path, text="payouts go"
    )
    old_id = request_id(message)
    assert buttons(message) == ["Approve", "Reject", "Edit"]
    await click(env, message, "approval_edit", "U0CAROL")
    view = env.slack.calls("views.open")[-1].args["view"]
    view = json.loads(view) if isinstance(view, str) else view

    def submission(amount: str) -> dict[str, Any]:
        return {
            "type": "view_submission",
            "team": {"id": TEAM},
            "user": {"id": "U0CAROL"},
            "view": {
                **view,
                "id": "V2",
                "state": {
                    "values": {
                        "arg:payout_id": {"value": {"type": "plain_text_input", "value": "P1"}},
                        "arg:amount": {"value": {"type": "plain_text_input", "value": amount}},
                    }
                },
            },
        }

    invalid = await env.action(submission("99999"))  # over the schema's maximum
    assert invalid.json()["response_action"] == "errors"
    assert (await env.action(submission("450"))).status_code == 200
    await env.idle()
    edited = env.slack.message("C0PAYMENTS", message["ts"])
    assert request_id(edited) != old_id and "450" in json.dumps(edited["blocks"])
    assert posts(crm, "/payouts") == []  # nothing runs until the new request is approved
    await click(env, message, "approval_approve", "U0DEV")  # a click on the old card's id
    assert posts(crm, "/payouts") == []
    await click(env, edited, "approval_approve", "U0DEV")
    assert [p.json()["amount"] for p in posts(crm, "/payouts")] == [450]


async def test_approvals_list_and_app_home(make_bot: BotFactory, crm: HttpTarget) -> None:
    env, _, _, _message = await request_refund(make_bot, crm)
    carol = (await env.command("approvals", user="U0CAROL")).json()
    assert "Waiting for you (1)" in json.dumps(carol["blocks"])
    sam = (await env.command("approvals", user="U0SAM")).json()
    assert "Requested by you (1)" in json.dumps(sam["blocks"])
    await env.event({"type": "app_home_opened", "user": "U0CAROL", "tab": "home", "channel": "D0X"})
    home = json.dumps(env.slack.home_view("U0CAROL"))
    assert "Waiting for you (1)" in home and "approval_approve" in home


async def test_tampered_audit_row_is_found(make_bot: BotFactory, crm: HttpTarget) -> None:
    env, _, _, message = await request_refund(make_bot, crm)
    await click(env, message, "approval_approve", "U0CAROL")
    log = env.services.audit
    count, broken = await log.verify()
    assert count == 3 and broken is None
    async with env.services.sessions.begin() as session:
        await session.execute(
            update(AuditEntry).where(AuditEntry.seq == 2).values(actor="U0MALLORY")
        )
    count, broken = await log.verify()
    assert broken is not None and broken.seq == 2


async def test_a_card_whose_post_answer_was_lost_is_posted_once(
    make_bot: BotFactory, crm: HttpTarget
) -> None:
    """The card's post meets a 502 after Slack made it. The client used to retry it: two
    cards for one request, and only the second one was updated when someone decided, the
    first kept live buttons. Now the card is looked for and found, and it is the one a
    decision updates."""
    model = ScriptedChatModel(
        [tool_call("issue_refund", order_id="1001", amount=25), reply("Refund done.")]
    )
    env = await make_bot({"offline": model}, skills_env={"CRM_URL": crm.base_url}, **allow(crm))
    env.slack.fail_next("chat.postMessage", status=502, done=True, after=1)  # the card
    _, ts = await env.mention("refunds refund it", channel="C0PAYMENTS")
    await env.idle()
    cards = [
        m
        for m in env.replies("C0PAYMENTS", ts)
        if "Approval needed" in json.dumps(m.get("blocks", []))
    ]
    print(f"\ncards in the thread: {len(cards)}")
    assert len(cards) == 1
    await click(env, card(env, ts), "approval_approve", "U0CAROL")
    assert buttons(env.slack.message("C0PAYMENTS", cards[0]["ts"])) == []
    assert len(posts(crm)) == 1
