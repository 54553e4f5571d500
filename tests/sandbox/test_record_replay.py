"""Record a session, replay it against the current bot, and report what changed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sandbox.record import ReplayError, iter_lines, read_recording
from sandbox.server import RunningSandbox
from switchboard.sandbox import check_recording, open_sandbox
from tests.sandbox.conftest import ENV, options

DATA = Path(__file__).parent / "data"
SESSION = DATA / "session.jsonl"


async def perform_session(sb: RunningSandbox) -> None:
    """A newcomer's first minutes: a mention, a command, a refund approved by someone else."""
    actions = sb.actions
    await actions.say(user="U0SAM", channel="C0PAYMENTS", text="@switchboard ask hello")
    await actions.settle()
    await actions.command(user="U0SAM", channel="C0PAYMENTS", text="/switchboard skills")
    request = await actions.say(
        user="U0SAM",
        channel="C0PAYMENTS",
        text="@switchboard refunds issue_refund order_id=1001 amount=25",
    )
    await actions.settle()
    card = [m for m in sb.emulator.messages["C0PAYMENTS"] if m.get("thread_ts") == request["ts"]][
        -1
    ]
    approve = next(
        e["action_id"]
        for b in card["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["text"]["text"] == "Approve"
    )
    await actions.click(
        user="U0CAROL", channel="C0PAYMENTS", message_ts=card["ts"], action_id=approve
    )
    await actions.settle()
    await actions.open_home(user="U0PRIYA")
    await actions.settle()


async def record(path: Path, tmp_path: Path) -> None:
    async with open_sandbox(options(tmp_path, record=path)) as sb:
        await perform_session(sb)


@pytest.mark.skipif(
    os.environ.get("SWITCHBOARD_RERECORD") != "1", reason="set SWITCHBOARD_RERECORD=1 to rewrite"
)
async def test_rerecord_committed_session(tmp_path: Path) -> None:
    """Rewrites tests/sandbox/data/session.jsonl (when the bot changes on purpose)."""
    await record(SESSION, tmp_path)


async def test_committed_session_replays_the_same() -> None:
    diff, steps = await check_recording(SESSION, env=ENV)
    assert steps == 5
    assert diff == "", diff


async def test_a_changed_answer_is_reported_as_a_diff(tmp_path: Path) -> None:
    changed = tmp_path / "changed.jsonl"
    lines = []
    for entry in iter_lines(SESSION):
        # A queued answer replaces its placeholder: the answer's text is in chat.update.
        is_post = entry["type"] == "call" and entry["method"] in {"chat.postMessage", "chat.update"}
        if is_post and "(offline model)" in str(entry["args"].get("text")):
            entry["args"]["text"] = entry["args"]["text"].replace("hello", "goodbye")
        lines.append(json.dumps(entry))
    changed.write_text("\n".join(lines) + "\n")
    diff, _ = await check_recording(changed, env=ENV)
    assert "goodbye" in diff and "hello" in diff
    assert diff.startswith("--- recorded")


async def test_recording_holds_actions_payloads_and_calls(tmp_path: Path) -> None:
    path = tmp_path / "fresh.jsonl"
    async with open_sandbox(options(tmp_path, record=path)) as sb:
        await sb.actions.say(user="U0SAM", channel="C0PAYMENTS", text="@switchboard ask hi")
        await sb.actions.settle()
    kinds = [(e["type"], e.get("kind") or e.get("do") or e.get("method")) for e in iter_lines(path)]
    assert kinds[0] == ("header", None)
    assert ("action", "say") in kinds
    assert ("inbound", "event:app_mention") in kinds and ("inbound", "event:message") in kinds
    assert ("call", "chat.postMessage") in kinds
    recording = read_recording(path)
    assert recording.steps[0].action["text"] == "@switchboard ask hi"
    diff, _ = await check_recording(path, env=ENV)
    assert diff == "", diff


def test_not_a_recording(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"type": "action", "do": "say"}\n')
    with pytest.raises(ReplayError, match="no header"):
        read_recording(path)
