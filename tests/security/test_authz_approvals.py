"""Finding 2 (high): four-eyes bypass through Edit; finding 7 (low): slow revocation.

An approver edits a request (amount 1 → 5000) and then approves their own edit; approvers
of an earlier version approve the edited one to make up a quorum; someone removed from the
approvers group a moment ago clicks Approve. Each time the CRM (a local HTTP server) must
receive nothing; the positive controls show the same clicks by people who may approve
reach it exactly once, with the edited amount.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storage.approvals import ApprovalRecord
from tests.bot.conftest import TEAM, BotEnv, BotFactory
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.http_target import HttpTarget
from tests.fakes.slack_api import FakeSlackApi
from tests.security.conftest import audit_events, ephemerals

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
      approvers: {users: [U0CAROL, U0DEV, U0ANA, U0BEN]}
      quorum: 2
      four_eyes: true
      expires_in: 1h
      allow_edit: true
"""


@pytest.fixture(autouse=True)
def approvers_in_payments(authz_workspace: FakeSlackApi) -> None:
    authz_workspace.set_members("C0PAYMENTS", ["U0SAM", "U0CAROL", "U0DEV", "U0ANA", "U0BEN"])


@pytest.fixture
def crm() -> Iterator[HttpTarget]:
    with HttpTarget() as target:
        target.route("POST", "/refunds", json={"refund_id": "RF-77", "status": "processed"})
        target.route("POST", "/payouts", json={"payout": "released"})
        yield target


def posts(crm: HttpTarget, path: str) -> list[Any]:
    return [r.json() for r in crm.requests if r.method == "POST" and r.path == path]


async def requested(
    make_bot: BotFactory,
    crm: HttpTarget,
    *,
    text: str,
    call: Any,
    tmp: Path | None = None,
) -> tuple[BotEnv, dict[str, Any]]:
    """Sam asks in #payments; the model requests ``call``; returns the card."""
    model = ScriptedChatModel([call, reply("Done.")], default="Done.")
    extra = {"SWITCHBOARD_SKILLS_DIR": str(tmp)} if tmp else {}
    env = await make_bot(
        {"offline": model},
        skills_env={"CRM_URL": crm.base_url},
        SWITCHBOARD_HTTP_ALLOWED_HOSTS=crm.base_url.removeprefix("http://"),
        **extra,
    )
    _, ts = await env.mention(text, user="U0SAM", channel="C0PAYMENTS")
    await env.idle()
    return env, latest_card(env, ts)


def latest_card(env: BotEnv, ts: str) -> dict[str, Any]:
    cards = [
        m
        for m in env.slack.messages("C0PAYMENTS", ts)
        if m.get("bot_id") and "Approval needed" in json.dumps(m.get("blocks", []))
    ]
    assert cards, "no approval card"
    found = env.slack.message("C0PAYMENTS", cards[-1]["ts"])
    assert found is not None
    return found


def request_id(card: dict[str, Any]) -> str:
    actions = next(b for b in card["blocks"] if b["type"] == "actions")
    return str(actions["elements"][0]["value"])


async def click(env: BotEnv, card: dict[str, Any], action: str, user: str) -> None:
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM},
        "user": {"id": user},
        "channel": {"id": "C0PAYMENTS"},
        "trigger_id": f"trigger-{user}",
        "message": card,
        "container": {"type": "message", "message_ts": card["ts"], "channel_id": "C0PAYMENTS"},
        "actions": [
            {"action_id": action, "value": request_id(card), "type": "button", "block_id": "x"}
        ],
    }
    assert (await env.action(payload)).status_code == 200
    await env.idle()


async def edit(env: BotEnv, card: dict[str, Any], user: str, **values: str) -> dict[str, Any]:
    """``user`` clicks Edit and submits ``values``; returns the card (now the new request)."""
    await click(env, card, "approval_edit", user)
    view = env.slack.calls("views.open")[-1].args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    state = {
        f"arg:{name}": {"value": {"type": "plain_text_input", "value": value}}
        for name, value in values.items()
    }
    submission = {
        "type": "view_submission",
        "team": {"id": TEAM},
        "user": {"id": user},
        "view": {**view, "id": "V9", "state": {"values": state}},
    }
    assert (await env.action(submission)).status_code == 200
    await env.idle()
    fresh = env.slack.message("C0PAYMENTS", card["ts"])
    assert fresh is not None and request_id(fresh) != request_id(card), "the edit made no request"
    return fresh


async def row(env: BotEnv, card: dict[str, Any]) -> ApprovalRecord:
    found = await env.services.approvals.store.get(request_id(card))
    assert found is not None
    return found


# --------------------------------------------------------------------------- finding 2


REFUND_1 = tool_call("issue_refund", order_id="1001", amount=1)


async def test_an_approver_cannot_approve_their_own_edit(
    make_bot: BotFactory, crm: HttpTarget
) -> None:
    env, card = await requested(make_bot, crm, text="refunds refund order 1001", call=REFUND_1)
    edited = await edit(env, card, "U0CAROL", order_id="1001", amount="5000")
    assert (await row(env, edited)).edited_by == "U0CAROL"

    await click(env, edited, "approval_approve", "U0CAROL")

    assert posts(crm, "/refunds") == []
    assert (await row(env, edited)).status == "pending"
    assert "You edited this request" in ephemerals(env, "U0CAROL")[-1]
    refused = await audit_events(env, "refused-click")
    assert [(r.actor, r.request_id) for r in refused] == [("U0CAROL", request_id(edited))]
    assert "edited by <@U0CAROL>" in json.dumps(edited["blocks"])


async def test_positive_control_someone_else_approves_the_edit(
    make_bot: BotFactory, crm: HttpTarget
) -> None:
    make_bot.slack.add_usergroup("S0LEADS", "leads", ["U0CAROL", "U0DEV"])
    env, card = await requested(make_bot, crm, text="refunds refund order 1001", call=REFUND_1)
    edited = await edit(env, card, "U0CAROL", order_id="1001", amount="5000")

    await click(env, edited, "approval_approve", "U0DEV")

    assert posts(crm, "/refunds") == [{"order_id": "1001", "amount": 5000}]
    assert (await row(env, edited)).status == "executed"


PAYOUT = tool_call("release_payout", payout_id="P1", amount=900)


async def test_earlier_approvers_and_the_editor_do_not_make_up_a_quorum(
    make_bot: BotFactory, crm: HttpTarget, tmp_path: Path
) -> None:
    (tmp_path / "payouts.yaml").write_text(PAYOUTS)
    env, card = await requested(make_bot, crm, text="payouts release P1", call=PAYOUT, tmp=tmp_path)
    await click(env, card, "approval_approve", "U0CAROL")  # 1 of 2 on the original
    edited = await edit(env, card, "U0DEV", payout_id="P1", amount="9000")

    await click(env, edited, "approval_approve", "U0CAROL")  # approved an earlier version
    await click(env, edited, "approval_approve", "U0DEV")  # the editor

    assert posts(crm, "/payouts") == []
    assert await env.services.approvals.store.votes(request_id(edited)) == []
    assert "earlier version" in ephemerals(env, "U0CAROL")[-1]
    assert "You edited this request" in ephemerals(env, "U0DEV")[-1]


async def test_positive_control_two_new_people_approve_the_edited_payout(
    make_bot: BotFactory, crm: HttpTarget, tmp_path: Path
) -> None:
    (tmp_path / "payouts.yaml").write_text(PAYOUTS)
    env, card = await requested(make_bot, crm, text="payouts release P1", call=PAYOUT, tmp=tmp_path)
    await click(env, card, "approval_approve", "U0CAROL")
    edited = await edit(env, card, "U0DEV", payout_id="P1", amount="9000")

    await click(env, edited, "approval_approve", "U0ANA")
    assert posts(crm, "/payouts") == []  # one of two
    await click(env, edited, "approval_approve", "U0ANA")  # the same person twice: once
    assert posts(crm, "/payouts") == []
    await click(env, edited, "approval_approve", "U0BEN")

    assert posts(crm, "/payouts") == [{"payout_id": "P1", "amount": 9000}]


# --------------------------------------------------------------------------- finding 7


async def test_someone_just_removed_from_the_approvers_group_cannot_approve(
    make_bot: BotFactory, crm: HttpTarget
) -> None:
    leads = make_bot.slack.add_usergroup("S0LEADS", "leads", ["U0CAROL", "U0DEV"])
    env, card = await requested(make_bot, crm, text="refunds refund order 1001", call=REFUND_1)
    # Dev's membership is in the bot's cache now (it showed him the approvals list).
    listing = (await env.command("approvals", user="U0DEV")).json()
    assert "Waiting for you (1)" in json.dumps(listing["blocks"])

    leads["users"].remove("U0DEV")  # revoked in Slack
    await click(env, card, "approval_approve", "U0DEV")

    assert posts(crm, "/refunds") == []
    assert (await row(env, card)).status == "pending"
    assert "Only <@U0CAROL>, <!subteam^S0LEADS>" in ephemerals(env, "U0DEV")[-1]


async def test_positive_control_a_current_group_member_approves(
    make_bot: BotFactory, crm: HttpTarget
) -> None:
    make_bot.slack.add_usergroup("S0LEADS", "leads", ["U0CAROL", "U0DEV"])
    env, card = await requested(make_bot, crm, text="refunds refund order 1001", call=REFUND_1)
    await env.command("approvals", user="U0DEV")

    await click(env, card, "approval_approve", "U0DEV")

    assert posts(crm, "/refunds") == [{"order_id": "1001", "amount": 1}]
