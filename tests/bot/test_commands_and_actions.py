"""/switchboard, feedback buttons and the comment modal, App Home, and the HTTP endpoints."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from storage.models import Feedback
from tests.bot.conftest import BotEnv, BotFactory
from tests.fakes.chat import ScriptedChatModel, reply


@pytest.mark.parametrize("text", ["", "help"])
async def test_help_is_ephemeral_usage(slack_bot: BotEnv, text: str) -> None:
    response = await slack_bot.command(text)
    assert response.status_code == 200
    body = response.json()
    assert body["response_type"] == "ephemeral"
    assert "/switchboard <skill> <text>" in body["text"]


async def test_unknown_subcommand_gets_usage(slack_bot: BotEnv) -> None:
    body = (await slack_bot.command("frobnicate now")).json()
    assert body["response_type"] == "ephemeral"
    assert "I don't know `frobnicate`" in body["text"] and "/switchboard help" in body["text"]
    assert slack_bot.slack.calls("chat.postMessage") == []


async def test_skills_lists_what_the_person_may_use(slack_bot: BotEnv) -> None:
    body = (await slack_bot.command("skills")).json()
    for name in ("ask", "summarize", "digest", "refunds"):
        assert f"*{name}*" in body["text"]


async def test_command_answers_in_under_a_second_and_posts_to_the_channel(
    make_bot: BotFactory,
) -> None:
    model = ScriptedChatModel([reply("Here's the summary."), reply("And more.")], delay=2)
    env = await make_bot({"offline": model})
    started = time.monotonic()
    response = await env.command("ask summarize the week")
    assert time.monotonic() - started < 1.0
    # acked without a "Running…" notice that would outlive the answer
    assert response.status_code == 200 and response.text == ""
    await env.idle()
    top = [
        m
        for m in env.slack.messages("C0GENERAL")
        if not m.get("thread_ts") or m["thread_ts"] == m["ts"]
    ]
    assert len(top) == 1
    assert top[0]["text"] == "Here's the summary."  # the placeholder was replaced in place
    # ...and the answer still says who asked, and what
    assert "<@U0SAM> asked `/switchboard ask summarize the week`" in json.dumps(top[0]["blocks"])
    # The answer's thread carries the conversation on.
    await env.message("and then?", thread_ts=top[0]["ts"])
    await env.idle()
    assert env.replies("C0GENERAL", top[0]["ts"])[-1]["text"] == "And more."


async def test_reset_command(make_bot: BotFactory) -> None:
    model = ScriptedChatModel([reply("ok"), reply("fresh")])
    env = await make_bot({"offline": model})
    await env.message("ask the code word is tulip", channel="D0SAM", channel_type="im")
    await env.idle()
    body = (await env.command("reset", channel="D0SAM")).json()
    assert body["text"].startswith("Forgotten")
    await env.message("ask code word?", channel="D0SAM", channel_type="im")
    await env.idle()
    assert "tulip" not in " ".join(str(m.content) for m in model.calls[-1])


async def test_feedback_click_is_stored_and_shown(make_bot: BotFactory) -> None:
    env = await make_bot({"offline": ScriptedChatModel([reply("An answer.")])})
    _, ts = await env.mention("ask hi, my card is 4111 1111 1111 1111")
    await env.idle()
    answer = env.replies("C0GENERAL", ts)[0]
    button = next(b for b in answer["blocks"] if b["type"] == "actions")["elements"][1]
    payload = {
        "type": "block_actions",
        "team": {"id": "T0FAKE"},
        "user": {"id": "U0CAROL"},
        "channel": {"id": "C0GENERAL"},
        "trigger_id": "123.456.abc",
        "message": answer,
        "actions": [
            {
                "action_id": button["action_id"],
                "value": button["value"],
                "type": "button",
                "block_id": "feedback",
                "action_ts": "1.2",
            }
        ],
    }
    response = await env.action(payload)
    assert response.status_code == 200
    await env.idle()
    async with env.services.sessions() as session:
        rows = list(await session.scalars(select(Feedback)))
    assert [(r.value, r.user_id, r.skill, r.message_ts) for r in rows] == [
        ("down", "U0CAROL", "ask", answer["ts"])
    ]
    # the request is kept with the feedback, masked (drafts outlive the thread's memory)
    assert rows[0].request == "hi, my card is [card ****1111]"
    # Per person: the buttons stay for everyone else; only Carol is thanked.
    updated = env.slack.message("C0GENERAL", answer["ts"])
    assert any(b.get("block_id") == "feedback" for b in updated["blocks"])
    thanks = [c.args for c in env.slack.calls("chat.postEphemeral")]
    assert [(t["user"], "feedback is recorded" in t["text"]) for t in thanks] == [("U0CAROL", True)]
    modal = env.slack.calls("views.open")[0].args
    view = json.loads(modal["view"]) if isinstance(modal["view"], str) else modal["view"]

    submission = {
        "type": "view_submission",
        "team": {"id": "T0FAKE"},
        "user": {"id": "U0CAROL"},
        "view": {
            **view,
            "id": "V1",
            "state": {
                "values": {
                    "comment": {
                        "text": {
                            "type": "plain_text_input",
                            "value": "Wrong order; customer jane@example.com",
                        }
                    }
                }
            },
        },
    }
    assert (await env.action(submission)).status_code == 200
    async with env.services.sessions() as session:
        row = (await session.scalars(select(Feedback))).one()
    assert row.comment is not None and "Wrong order" in row.comment
    assert "jane@example.com" not in row.comment  # PII is masked in storage too

    # A second click changes the verdict instead of adding a row.
    payload["actions"][0]["action_id"] = "feedback_up"
    await env.action(payload)
    async with env.services.sessions() as session:
        assert [r.value for r in await session.scalars(select(Feedback))] == ["up"]


async def test_app_home_lists_skills_with_examples(slack_bot: BotEnv) -> None:
    response = await slack_bot.event(
        {"type": "app_home_opened", "user": "U0SAM", "tab": "home", "channel": "D0SAM"}
    )
    assert response.status_code == 200
    view = slack_bot.slack.home_view("U0SAM")
    assert view is not None
    text = json.dumps(view)
    assert "refunds" in text and "digest" in text and "Try:" in text


async def test_health_ready_and_metrics(make_bot: BotFactory) -> None:
    env = await make_bot({"offline": ScriptedChatModel([reply("ok")])})
    assert (await env.http.get("/healthz")).json() == {"status": "ok"}
    ready = await env.http.get("/readyz")
    assert (
        ready.status_code == 200 and ready.json()["sql"] == "ok" and ready.json()["redis"] == "ok"
    )
    await env.mention("ask hi")
    await env.idle()
    await env.command("help")
    metrics = (await env.http.get("/metrics")).text
    assert 'switchboard_slack_requests_total{outcome="ok",type="event:app_mention"} 1.0' in metrics
    assert 'switchboard_runs_total{outcome="reply",skill="ask"} 1.0' in metrics
    assert "switchboard_slack_ack_seconds_bucket" in metrics
    assert 'switchboard_model_tokens_total{direction="input",skill="ask"}' in metrics


async def test_readyz_reports_an_unreachable_database(make_bot: BotFactory) -> None:
    env = await make_bot()
    await env.services.engine.dispose()
    env.services.engine.url  # noqa: B018 - the engine object stays, its pool is gone
    from sqlalchemy.ext.asyncio import create_async_engine

    env.services.engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    ready = await env.http.get("/readyz")
    assert ready.status_code == 503 and ready.json()["sql"].startswith("unreachable")
    await env.services.engine.dispose()
