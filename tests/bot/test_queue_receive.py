"""The receiver's half of the run queue: a message is stored before the ack, and a message
that cannot be stored is not acked (Slack redelivers it)."""

from __future__ import annotations

import json

from sqlalchemy import text

from bot.views.runs import STOP_ACTION, WORKING_TEXT
from storage.models import InboxMessage
from tests.bot.conftest import BotFactory
from tests.fakes.chat import ScriptedChatModel


async def test_a_message_that_cannot_be_stored_is_not_acked_and_its_redelivery_is_answered(
    make_bot: BotFactory,
) -> None:
    env = await make_bot({"offline": ScriptedChatModel(default="stored at last")})
    async with env.services.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE run_inbox RENAME TO run_inbox_away"))
    first, ts = await env.mention("ask are you there?", event_id="EvSTORE1")
    assert first.status_code >= 500  # not acked: Slack will deliver it again
    async with env.services.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE run_inbox_away RENAME TO run_inbox"))
    again = await env.event(
        {
            "type": "app_mention",
            "user": "U0SAM",
            "text": "<@U0BOT> ask are you there?",
            "ts": ts,
            "channel": "C0GENERAL",
            "team": "T0FAKE",
        },
        event_id="EvSTORE1",
        retry_num=1,
    )
    assert again.status_code == 200
    await env.idle()
    assert [m["text"] for m in env.replies("C0GENERAL", ts)] == ["stored at last"]


async def test_messages_in_a_busy_thread_wait_and_are_folded_into_one_turn(
    make_bot: BotFactory,
) -> None:
    model = ScriptedChatModel(default="ok", delay=3.0)  # the first turn outlasts the next two posts
    env = await make_bot({"offline": model})
    _, root = await env.mention("ask first question")
    await env.slack.wait_for("chat.postMessage", timeout=5)  # the first turn is running
    for text_ in ("second", "third"):
        await env.mention(f"ask {text_} thing", thread_ts=root)
    await env.idle(timeout=30)
    asked = [
        str(m.content) for call in model.calls for m in call if getattr(m, "type", "") == "human"
    ]
    answers = [m["text"] for m in env.replies("C0GENERAL", root)]
    print(f"model turns={len(model.calls)} answers={answers}")
    assert len(model.calls) == 2  # the two waiting messages became one turn
    assert any("second thing" in a and "third thing" in a for a in asked)
    assert answers == ["ok", "ok"]


async def test_the_placeholder_offers_stop_and_stop_cancels_the_turn(
    make_bot: BotFactory,
) -> None:
    model = ScriptedChatModel(default="too late", delay=30.0)
    env = await make_bot({"offline": model})
    _, ts = await env.mention("ask something slow")
    [post] = await env.slack.wait_for("chat.postMessage", timeout=5)
    assert post.args["text"] == WORKING_TEXT
    blocks = post.args["blocks"]
    blocks = blocks if isinstance(blocks, list) else json.loads(blocks)
    button = blocks[-1]["elements"][0]
    assert button["action_id"] == STOP_ACTION
    placeholder_ts = post.response["ts"]
    other = await env.action(_click(button["value"], "U0CAROL", placeholder_ts))
    assert other.status_code == 200
    mine = await env.action(_click(button["value"], "U0SAM", placeholder_ts))
    assert mine.status_code == 200
    await env.idle(timeout=15)
    [shown] = env.replies("C0GENERAL", ts)
    assert shown["text"].startswith("Stopped")
    async with env.services.sessions() as session:
        row = (await session.execute(text("SELECT outcome FROM run_inbox"))).scalar_one()
    assert row == "stopped"
    assert InboxMessage.__tablename__ == "run_inbox"


def _click(value: str, user: str, message_ts: str) -> dict[str, object]:
    return {
        "type": "block_actions",
        "team": {"id": "T0FAKE"},
        "user": {"id": user},
        "channel": {"id": "C0GENERAL"},
        "message": {"ts": message_ts},
        "actions": [{"action_id": STOP_ACTION, "value": value, "type": "button"}],
        "trigger_id": "1.2.3",
    }


async def test_one_person_opening_many_threads_does_not_starve_another(
    make_bot: BotFactory,
) -> None:
    """Workers take a thread's job by priority, then age; a thread goes behind the threads
    its person already has in the queue. With one worker slot: Sam opens five threads, then
    Carol one; Carol's is answered third (behind Sam's first two), not last."""
    model = ScriptedChatModel(default="ok", delay=0.4)
    env = await make_bot({"offline": model}, SWITCHBOARD_WORKER_CONCURRENCY="1")
    await env.mention("ask sam question 1")
    await env.slack.wait_for("chat.postMessage", timeout=10)  # the only slot is busy
    for n in range(2, 6):
        await env.mention(f"ask sam question {n}")
    await env.mention("ask carol question", user="U0CAROL")
    await env.idle(timeout=60)
    order = [
        str(m.content).removeprefix("ask ")
        for call in model.calls
        for m in call
        if getattr(m, "type", "") == "human"
    ]
    print(f"answered in order: {order}")
    assert sorted(order) == sorted([*(f"sam question {n}" for n in range(1, 6)), "carol question"])
    assert order.index("carol question") <= 2  # without fairness: last (index 5)
