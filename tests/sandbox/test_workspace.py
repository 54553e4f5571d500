"""The sandbox end to end, without a browser: people act, the unchanged bot answers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from sandbox.actions import encode_text
from sandbox.crm import DemoCrm
from sandbox.seed import SeedError, seed_file
from sandbox.server import RunningSandbox, reset_state
from sandbox.workspace import Emulator
from switchboard.sandbox import open_sandbox
from tests.sandbox.conftest import options


def replies(sb: RunningSandbox, channel: str, ts: str) -> list[dict[str, object]]:
    return [m for m in sb.emulator.messages[channel] if m.get("thread_ts") == ts and m["ts"] != ts]


async def test_mention_is_answered_in_its_thread(sandbox: RunningSandbox) -> None:
    message = await sandbox.actions.say(
        user="U0SAM", channel="C0PAYMENTS", text="@switchboard ask hello there"
    )
    assert message["text"] == "<@U0SWITCH> ask hello there"
    await sandbox.actions.settle()
    answers = replies(sandbox, "C0PAYMENTS", str(message["ts"]))
    assert len(answers) == 1
    assert "(offline model)" in str(answers[0]["text"])
    # The thinking reaction came and went.
    methods = [c.method for c in sandbox.calls]
    assert "reactions.add" in methods and "reactions.remove" in methods
    assert not sandbox.emulator.find_message("C0PAYMENTS", str(message["ts"])).get("reactions")  # type: ignore[union-attr]


async def test_slash_command_answer_is_shown_to_that_person_only(sandbox: RunningSandbox) -> None:
    ack = await sandbox.actions.command(
        user="U0SAM", channel="C0PAYMENTS", text="/switchboard skills"
    )
    assert ack.status == 200
    mine = sandbox.emulator.visible_ephemeral("U0SAM")
    assert any("refunds" in str(m["text"]) for m in mine)
    assert sandbox.emulator.visible_ephemeral("U0CAROL") == []
    unknown = await sandbox.actions.command(
        user="U0SAM", channel="C0PAYMENTS", text="/switchboard frobnicate"
    )
    assert unknown.status == 200
    assert "I don't know" in str(sandbox.emulator.visible_ephemeral("U0SAM")[-1]["text"])


async def test_refund_runs_against_the_demo_crm_once_approved(sandbox: RunningSandbox) -> None:
    actions = sandbox.actions
    request = await actions.say(
        user="U0SAM",
        channel="C0PAYMENTS",
        text="@switchboard refunds issue_refund order_id=1001 amount=25",
    )
    await actions.settle()
    card = replies(sandbox, "C0PAYMENTS", str(request["ts"]))[-1]
    buttons = {
        e["text"]["text"]: e  # type: ignore[index]
        for b in card["blocks"]  # type: ignore[attr-defined]
        if b["type"] == "actions"
        for e in b["elements"]
    }
    assert {"Approve", "Reject"} <= set(buttons)
    assert sandbox.crm.refunds == []
    # The requester may not approve; Carol (an approver) may.
    await actions.click(
        user="U0SAM",
        channel="C0PAYMENTS",
        message_ts=str(card["ts"]),
        action_id=buttons["Approve"]["action_id"],
    )
    await actions.settle()
    assert sandbox.crm.refunds == []
    await actions.click(
        user="U0CAROL",
        channel="C0PAYMENTS",
        message_ts=str(card["ts"]),
        action_id=buttons["Approve"]["action_id"],
    )
    await actions.settle()
    assert [r["amount"] for r in sandbox.crm.refunds] == [25.0]
    updated = sandbox.emulator.find_message("C0PAYMENTS", str(card["ts"]))
    assert updated is not None and "Approved by <@U0CAROL>" in str(updated["blocks"])
    assert "RF-00001" in str(replies(sandbox, "C0PAYMENTS", str(request["ts"]))[-1]["text"])


async def test_app_home_and_assistant(sandbox: RunningSandbox) -> None:
    await sandbox.actions.open_home(user="U0PRIYA")
    home = sandbox.emulator.home_view("U0PRIYA")
    assert home is not None and "Your skills" in str(home["blocks"])
    thread_ts = await sandbox.actions.start_assistant(user="U0PRIYA")
    await sandbox.actions.settle()
    state = sandbox.emulator.assistant_threads[("D0PRIYA", thread_ts)]
    assert state["prompts"]
    await sandbox.actions.say(user="U0PRIYA", channel="D0PRIYA", text="ask hi", thread_ts=thread_ts)
    await sandbox.actions.settle()
    assert state.get("title") == "ask hi"
    assert state.get("status") == ""  # "is thinking…" was shown, then cleared
    assert any("offline model" in str(m["text"]) for m in replies(sandbox, "D0PRIYA", thread_ts))


async def test_response_url_answers(sandbox: RunningSandbox) -> None:
    emulator = sandbox.emulator
    token = emulator.new_response_url_token(user="U0SAM", channel="C0PAYMENTS")
    async with httpx.AsyncClient() as http:
        ok = await http.post(f"{sandbox.url}/hooks/{token}", json={"text": "just you"})
        shared = await http.post(
            f"{sandbox.url}/hooks/{token}", json={"text": "everyone", "response_type": "in_channel"}
        )
        bad = await http.post(f"{sandbox.url}/hooks/nope", json={"text": "x"})
    assert ok.json() == {"ok": True} and shared.json() == {"ok": True}
    assert bad.status_code == 404
    assert emulator.visible_ephemeral("U0SAM")[-1]["text"] == "just you"
    assert emulator.messages["C0PAYMENTS"][-1]["text"] == "everyone"


async def test_demo_crm_deduplicates_by_idempotency_key(sandbox: RunningSandbox) -> None:
    async with httpx.AsyncClient(base_url=f"{sandbox.url}/crm") as crm:
        order = (await crm.get("/orders/1001")).json()
        assert order["refundable"] == 89.9
        headers = {"Idempotency-Key": "k1"}
        first = await crm.post("/refunds", json={"order_id": "1001", "amount": 10}, headers=headers)
        again = await crm.post("/refunds", json={"order_id": "1001", "amount": 10}, headers=headers)
        too_much = await crm.post("/refunds", json={"order_id": "1001", "amount": 500})
        missing = await crm.get("/orders/999")
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    assert too_much.status_code == 422 and missing.status_code == 404
    assert len(DemoCrm.sample().refunds) == 0 and len(sandbox.crm.refunds) == 1


def test_typed_text_is_encoded_as_a_slack_client_would() -> None:
    emulator = Emulator(token="t")
    emulator.add_user("U0ANA", "ana")
    emulator.add_channel("C0GEN", "general")
    emulator.add_usergroup("S0LEADS", "leads", "Leads")
    text = encode_text("@switchboard ask @ana and @leads about #general <b> & @nobody", emulator)
    assert text == (
        "<@U0SWITCH> ask <@U0ANA> and <!subteam^S0LEADS|@leads> about <#C0GEN|general> "
        "&lt;b&gt; &amp; @nobody"
    )


def test_seed_file(tmp_path: Path) -> None:
    seed = tmp_path / "team.yaml"
    seed.write_text(
        """
team: {id: T0ACME, name: Acme}
users:
  - {id: U0ANA, name: ana, real_name: Ana Lima, tz: Europe/Lisbon}
  - {id: U0BEN, name: ben}
usergroups:
  - {id: S0LEADS, handle: leads, members: [U0ANA]}
channels:
  - {id: C0GEN, name: general}
messages:
  - {channel: C0GEN, user: U0BEN, text: "deploy done?", minutes_ago: 30,
     replies: [{user: U0ANA, text: "yes", minutes_after: 2}]}
"""
    )
    from datetime import UTC, datetime

    emulator = Emulator(token="t")
    seed_file(emulator, seed, datetime.now(UTC))
    assert emulator.team_name == "Acme"
    assert emulator.bot_user_id in emulator.channels["C0GEN"]["members"]
    root, reply = emulator.messages["C0GEN"]
    assert reply["thread_ts"] == root["ts"] and root["reply_count"] == 1
    seed.write_text("users:\n  - {id: U0ANA}\n")
    with pytest.raises(SeedError, match=r"users\[0\]: `name` is required"):
        seed_file(Emulator(token="t"), seed, datetime.now(UTC))


async def test_state_is_kept_between_runs_until_reset(tmp_path: Path) -> None:
    async with open_sandbox(options(tmp_path, persist=True)) as sb:
        await sb.actions.say(user="U0SAM", channel="C0SUPPORT", text="remember me")
    async with open_sandbox(options(tmp_path, persist=True)) as sb:
        assert sb.emulator.messages["C0SUPPORT"][-1]["text"] == "remember me"
    assert (tmp_path / "state" / "sandbox.db").exists()
    assert reset_state(tmp_path / "state")
    assert not (tmp_path / "state").exists()
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(ValueError, match="does not look like"):
        reset_state(tmp_path / "elsewhere")


async def test_feedback_modal_opens_and_submits(sandbox: RunningSandbox) -> None:
    actions, emulator = sandbox.actions, sandbox.emulator
    message = await actions.say(user="U0SAM", channel="C0PAYMENTS", text="@switchboard ask hi")
    await actions.settle()
    answer = replies(sandbox, "C0PAYMENTS", str(message["ts"]))[-1]
    await actions.click(
        user="U0SAM", channel="C0PAYMENTS", message_ts=str(answer["ts"]), action_id="feedback_down"
    )
    await actions.settle()
    modal = emulator.open_modal("U0SAM")
    assert modal is not None and modal["title"]["text"] == "What went wrong?"
    assert emulator.open_modal("U0CAROL") is None
    result = await actions.submit(
        user="U0SAM", view_id=str(modal["id"]), values={"comment": {"text": "too vague"}}
    )
    assert result == {"closed": True, "errors": {}}
    assert emulator.open_modal("U0SAM") is None
    assert any(
        "feedback is recorded" in str(m["text"]) for m in emulator.visible_ephemeral("U0SAM")
    )
    # one person's 👎 leaves the buttons for everyone else
    recorded = emulator.find_message("C0PAYMENTS", str(answer["ts"]))
    assert recorded is not None and "feedback_up" in str(recorded["blocks"])
    assert not any("feedback" in str(m["text"]) for m in emulator.visible_ephemeral("U0CAROL"))


async def test_streamed_answers_arrive_in_pieces(tmp_path: Path) -> None:
    streaming = options(
        tmp_path, env={"SWITCHBOARD_MODEL": "offline", "SWITCHBOARD_STREAMING": "1"}
    )
    async with open_sandbox(streaming) as sb:
        seen: list[str] = []
        sb.emulator.listeners.append(
            lambda change: (
                seen.append(str(change.data["message"].get("streaming")))
                if change.kind == "message" and change.data["message"].get("bot_id")
                else None
            )
        )
        message = await sb.actions.say(
            user="U0SAM", channel="C0PAYMENTS", text="@switchboard ask hi"
        )
        await sb.actions.settle()
        methods = [c.method for c in sb.calls]
        assert "chat.startStream" in methods and "chat.stopStream" in methods
        final = replies(sb, "C0PAYMENTS", str(message["ts"]))[-1]
        assert final["streaming"] is False and "offline model" in str(final["text"])
        assert "True" in seen and seen[-1] == "False"
