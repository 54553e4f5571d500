"""The one Slack fake (sandbox.workspace) answers what each of the two old fakes got right.

Called directly (no server): a table of calls and the answer Slack gives, including what
the tests' fake checked and the sandbox did not (and the other way round).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from sandbox.workspace import UNLIMITED, Emulator

TOKEN = "xoxb-t"


@pytest.fixture
def ws() -> Emulator:
    emulator = Emulator(token=TOKEN, clock=lambda: 1_700_000_000.0)
    emulator.add_user("U1", "alice")
    emulator.add_user("U2", "bob")
    emulator.add_channel("C1", "general", members=["U1", "U2", emulator.bot_user_id])
    return emulator


def call(ws: Emulator, method: str, **args: Any) -> dict[str, Any]:
    return ws.call(method, args, TOKEN)[2]


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        ({"type": "section", "fields": [{"type": "mrkdwn", "text": "x" * 2001}]}, "field"),
        ({"type": "header", "text": {"type": "mrkdwn", "text": "title"}}, "plain_text"),
        ({"type": "header", "text": {"type": "plain_text", "text": ""}}, "empty"),
        ({"type": "context", "elements": []}, "element"),
        ({"type": "actions", "elements": []}, "element"),
    ],
)
def test_block_kit_limits_slack_sdk_lets_through_are_refused(
    ws: Emulator, block: dict[str, Any], reason: str
) -> None:
    answer = call(ws, "chat.postMessage", channel="C1", text="t", blocks=[block])

    assert answer["error"] == "invalid_blocks"
    assert reason in answer["errors"][0] and "/blocks/0" in answer["errors"][0]


def test_a_modal_needs_a_title(ws: Emulator) -> None:
    trigger = ws.new_trigger("U1")

    view = {"type": "modal", "blocks": [section("hi")]}

    answer = call(ws, "views.open", trigger_id=trigger, view=view)

    assert (answer["error"], answer["errors"]) == (
        "invalid_arguments",
        ["a modal must have a title"],
    )


def test_attachments_stay_on_the_posted_message_and_an_edit_replaces_them(ws: Emulator) -> None:
    attachments = [{"color": "#ff0000", "text": "late"}]

    posted = call(ws, "chat.postMessage", channel="C1", text="t", attachments=attachments)
    assert ws.find("C1", posted["ts"])["attachments"] == attachments  # type: ignore[index]
    call(ws, "chat.update", channel="C1", ts=posted["ts"], text="fixed")

    assert "attachments" not in ws.find("C1", posted["ts"])  # type: ignore[operator]


def test_several_users_open_one_group_dm_with_the_bot(ws: Emulator) -> None:
    first = call(ws, "conversations.open", users="U1,U2")
    again = call(ws, "conversations.open", users="U2,U1")

    assert first["ok"] and not first["already_open"]
    assert again["channel"]["id"] == first["channel"]["id"] and again["already_open"]
    info = call(ws, "conversations.info", channel=first["channel"]["id"])["channel"]
    assert info["is_mpim"] and info["is_member"] and info["num_members"] == 3
    assert call(ws, "conversations.open", users="U1,U404")["error"] == "user_not_found"


def test_a_cursor_of_one_kind_is_refused_by_a_method_of_the_other(ws: Emulator) -> None:
    for n in range(3):
        ws.add_message("C1", f"m{n}", user="U1")
    history = call(ws, "conversations.history", channel="C1", limit=1)
    offset = base64.b64encode(b"offset:1").decode()

    assert history["has_more"]
    cursor = history["response_metadata"]["next_cursor"]
    assert call(ws, "conversations.members", channel="C1", cursor=cursor)["error"] == (
        "invalid_cursor"
    )
    assert call(ws, "conversations.history", channel="C1", cursor=offset)["error"] == (
        "invalid_cursor"
    )


def test_streams_keep_their_recipient_and_final_metadata(ws: Emulator) -> None:
    root = ws.add_message("C1", "question", user="U1")["ts"]
    metadata = {"event_type": "answer", "event_payload": {"run": "r1"}}

    started = call(ws, "chat.startStream", channel="C1", thread_ts=root, recipient_user_id="U1")
    call(
        ws,
        "chat.stopStream",
        channel="C1",
        ts=started["ts"],
        markdown_text="done",
        metadata=metadata,
    )

    message = ws.find("C1", started["ts"])
    assert message is not None
    assert (message["recipient_user_id"], message["metadata"]) == ("U1", metadata)
    assert not message["streaming"] and message["text"] == "done"


def test_users_list_has_cache_ts_and_status_keeps_loading_messages(ws: Emulator) -> None:
    dm = ws.dm_of("U1")

    assert call(ws, "users.list")["cache_ts"] == 1_700_000_000
    call(
        ws,
        "assistant.threads.setStatus",
        channel_id=dm,
        thread_ts="1.0",
        status="thinking",
        loading_messages=["Reading…"],
    )
    assert ws.assistant_threads[(dm, "1.0")]["loading_messages"] == ["Reading…"]


def test_a_test_workspace_takes_any_trigger_but_an_expired_one(ws: Emulator) -> None:
    title = {"type": "plain_text", "text": "Hi"}
    view = {"type": "modal", "title": title, "blocks": [section("hi")]}
    lenient = Emulator(token=TOKEN, any_trigger=True)
    lenient.new_trigger(None, trigger_id="expired", ttl=-1.0)

    assert call(ws, "views.open", trigger_id="made-up", view=view)["error"] == (
        "invalid_trigger_id"
    )
    assert call(lenient, "views.open", trigger_id="made-up", view=view)["ok"]
    assert call(lenient, "views.open", trigger_id="expired", view=view)["error"] == (
        "expired_trigger_id"
    )


def test_block_ids_are_added_unless_turned_off(ws: Emulator) -> None:
    as_posted = Emulator(token=TOKEN, block_ids=False)
    as_posted.add_channel("C1", "general", members=[as_posted.bot_user_id])
    blocks = [section("hi")]

    ours = call(ws, "chat.postMessage", channel="C1", text="t", blocks=blocks)
    plain = call(as_posted, "chat.postMessage", channel="C1", text="t", blocks=blocks)

    assert ours["message"]["blocks"][0]["block_id"]
    assert plain["message"]["blocks"] == blocks


def test_unlimited_turns_the_write_limit_off() -> None:
    ws = Emulator(token=TOKEN, rate_limit=UNLIMITED, clock=lambda: 5.0)
    ws.add_channel("C1", "general", members=[ws.bot_user_id])

    statuses = {
        ws.call("chat.postMessage", {"channel": "C1", "text": "x"}, TOKEN)[0] for _ in range(50)
    }

    assert statuses == {200}
