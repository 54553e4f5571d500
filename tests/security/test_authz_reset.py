"""Finding 4 (medium): reset while an approval is pending.

Sam's refund waits for approval in a #payments thread. Dev, who only reads along, says
``reset`` in the thread (and tries ``/switchboard reset`` where Sam's DM request waits).
The reset must be refused, the request stay approvable, and the audit say so. The
requester's own reset abandons the request: the card says "Abandoned", the audit says
``abandoned``, and no later click makes anything run or be reported as executed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.bot.conftest import TEAM, BotEnv, BotFactory
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.http_target import HttpTarget
from tests.fakes.slack_api import FakeSlackApi
from tests.security.conftest import audit_events, bot_posts, ephemerals


@pytest.fixture(autouse=True)
def readers_in_payments(authz_workspace: FakeSlackApi) -> None:
    authz_workspace.set_members("C0PAYMENTS", ["U0SAM", "U0CAROL", "U0DEV"])


@pytest.fixture
def crm() -> Iterator[HttpTarget]:
    with HttpTarget() as target:
        target.route("POST", "/refunds", json={"refund_id": "RF-77", "status": "processed"})
        yield target


def refunds(crm: HttpTarget) -> list[Any]:
    return [r.json() for r in crm.requests if r.method == "POST" and r.path == "/refunds"]


async def pending_refund(
    make_bot: BotFactory, crm: HttpTarget
) -> tuple[BotEnv, str, dict[str, Any]]:
    model = ScriptedChatModel(
        [tool_call("issue_refund", order_id="1001", amount=40), reply("Refunded.")],
        default="OK.",
    )
    env = await make_bot(
        {"offline": model},
        skills_env={"CRM_URL": crm.base_url},
        SWITCHBOARD_HTTP_ALLOWED_HOSTS=crm.base_url.removeprefix("http://"),
    )
    _, ts = await env.mention("refunds refund order 1001", user="U0SAM", channel="C0PAYMENTS")
    await env.idle()
    [card] = [
        m
        for m in env.slack.messages("C0PAYMENTS", ts)
        if "Approval needed" in json.dumps(m.get("blocks", []))
    ]
    return env, ts, card


async def click(env: BotEnv, card: dict[str, Any], user: str) -> None:
    actions = next(b for b in card["blocks"] if b["type"] == "actions")
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM},
        "user": {"id": user},
        "channel": {"id": "C0PAYMENTS"},
        "message": card,
        "actions": [
            {
                "action_id": "approval_approve",
                "value": actions["elements"][0]["value"],
                "type": "button",
            }
        ],
    }
    assert (await env.action(payload)).status_code == 200
    await env.idle()


def card_text(env: BotEnv, card: dict[str, Any]) -> str:
    return json.dumps(env.slack.message("C0PAYMENTS", card["ts"]))


async def test_someone_else_cannot_reset_a_thread_with_a_pending_approval(
    make_bot: BotFactory, crm: HttpTarget
) -> None:
    env, ts, card = await pending_refund(make_bot, crm)

    await env.mention("reset", user="U0DEV", channel="C0PAYMENTS", thread_ts=ts)
    await env.idle()

    assert "only they can reset it" in ephemerals(env, "U0DEV")[-1]
    assert not any("Forgotten" in t for t in bot_posts(env, "C0PAYMENTS", ts))
    [refused] = await audit_events(env, "refused-reset")
    assert refused.actor == "U0DEV"
    # the request is untouched and still does what it says once approved
    await click(env, card, "U0CAROL")
    assert refunds(crm) == [{"order_id": "1001", "amount": 40}]
    assert "done:" in card_text(env, card)
    events = [e.event for e in await audit_events(env) if e.request_id == refused.request_id]
    assert events == ["requested", "refused-reset", "approved", "executed"]


async def test_a_slash_command_reset_is_refused_too(make_bot: BotFactory, crm: HttpTarget) -> None:
    model = ScriptedChatModel([tool_call("issue_refund", order_id="1001", amount=40)])
    env = await make_bot(
        {"offline": model},
        skills_env={"CRM_URL": crm.base_url},
        SWITCHBOARD_HTTP_ALLOWED_HOSTS=crm.base_url.removeprefix("http://"),
    )
    env.slack.set_members("D0SAM", ["U0SAM", "U0DEV"])  # a conversation both can type in
    await env.message("refunds refund 1001", user="U0SAM", channel="D0SAM", channel_type="im")
    await env.idle()
    [pending] = await env.services.approvals.store.for_thread(f"{TEAM}:D0SAM:-")

    body = (await env.command("reset", user="U0DEV", channel="D0SAM")).json()

    assert "only they can reset it" in body["text"]
    fresh = await env.services.approvals.store.get(pending.id)
    assert fresh is not None and fresh.status == "pending"


async def test_the_requesters_reset_abandons_the_request_and_nothing_runs(
    make_bot: BotFactory, crm: HttpTarget
) -> None:
    env, ts, card = await pending_refund(make_bot, crm)

    await env.mention("reset", user="U0SAM", channel="C0PAYMENTS", thread_ts=ts)
    await env.idle()
    await click(env, card, "U0CAROL")  # a click on the (now closed) card

    assert refunds(crm) == []
    assert "Forgotten" in bot_posts(env, "C0PAYMENTS", ts)[-1]
    shown = card_text(env, card)
    assert "Abandoned" in shown and "Nothing ran" in shown and "approval_approve" not in shown
    [row] = await env.services.approvals.store.for_thread(f"{TEAM}:C0PAYMENTS:{ts}")
    assert row.status == "abandoned" and row.completed_at is not None
    events = [e.event for e in await audit_events(env) if e.request_id == row.id]
    assert events == ["requested", "abandoned"]
    assert "abandoned" in ephemerals(env, "U0CAROL")[-1]
