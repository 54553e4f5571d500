"""Whole signed Slack payloads through the real ASGI app to a fake Slack Web API."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from bot.views.runs import WORKING_TEXT
from tests.bot.conftest import BotEnv, BotFactory, sign
from tests.fakes.chat import ScriptedChatModel, reply


def texts(model: ScriptedChatModel, call: int = -1) -> str:
    return " ".join(str(m.content) for m in model.calls[call])


async def test_url_verification(slack_bot: BotEnv) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "abc123", "token": "x"})
    response = await slack_bot.post(body, "application/json")
    assert response.status_code == 200
    assert "abc123" in response.text


async def test_mention_is_answered_in_its_thread_with_memory(make_bot: BotFactory) -> None:
    model = ScriptedChatModel([reply("Noted, order 1001."), reply("It was order **1001**.")])
    env = await make_bot({"offline": model})
    response, ts = await env.mention("ask remember order 1001")
    assert response.status_code == 200
    await env.idle()
    answers = env.replies("C0GENERAL", ts)
    assert [a["text"] for a in answers] == ["Noted, order 1001."]
    assert answers[0]["thread_ts"] == ts  # in the mention's thread, not the channel

    # A follow-up in the thread, without a mention, is answered with the thread's memory.
    response, _ = await env.message("which order was it?", thread_ts=ts)
    await env.idle()
    answers = env.replies("C0GENERAL", ts)
    assert answers[-1]["text"] == "It was order *1001*."  # Markdown became mrkdwn
    assert "remember order 1001" in texts(model) and "Noted, order 1001." in texts(model)
    # Feedback buttons under the answer.
    actions = [b for b in answers[-1]["blocks"] if b["type"] == "actions"]
    assert {e["action_id"] for e in actions[0]["elements"]} == {"feedback_up", "feedback_down"}


async def test_thread_without_the_bot_is_ignored(slack_bot: BotEnv) -> None:
    root = slack_bot.slack.add_message("C0GENERAL", "lunch?", user="U0CAROL")
    await slack_bot.message("pizza!", thread_ts=root)
    await slack_bot.idle()
    assert slack_bot.slack.calls("chat.postMessage") == []


async def test_dm_is_answered(make_bot: BotFactory) -> None:
    env = await make_bot({"offline": ScriptedChatModel([reply("Hi Sam!"), reply("Still here.")])})
    await env.message("ask hello", channel="D0SAM", channel_type="im")
    await env.idle()
    posted = env.answers()
    assert [a.text for a in posted] == ["Hi Sam!"]
    assert not posted[0].args.get("thread_ts")
    await env.message("are you there?", channel="D0SAM", channel_type="im")
    await env.idle()
    assert env.answers()[-1].text == "Still here."


async def test_assistant_thread(make_bot: BotFactory) -> None:
    env = await make_bot({"offline": ScriptedChatModel([reply("Here is your answer.")])})
    started = {
        "type": "assistant_thread_started",
        "assistant_thread": {
            "user_id": "U0SAM",
            "channel_id": "D0SAM",
            "thread_ts": "1729999327.187299",
        },
    }
    assert (await env.event(started)).status_code == 200
    await env.slack.wait_for("assistant.threads.setSuggestedPrompts")
    prompts = env.slack.calls("assistant.threads.setSuggestedPrompts")[0].args["prompts"]
    prompts = json.loads(prompts) if isinstance(prompts, str) else prompts
    assert any(p["message"].startswith("refunds") or "digest" in p["message"] for p in prompts)

    await env.message(
        "ask what's up?", channel="D0SAM", channel_type="im", thread_ts="1729999327.187299"
    )
    await env.idle()
    statuses = [c.args.get("status") for c in env.slack.calls("assistant.threads.setStatus")]
    assert statuses[0] == "is thinking…" and statuses[-1] == ""
    assert env.slack.calls("assistant.threads.setTitle")
    answer = env.answers()[-1].args
    assert answer["text"] == "Here is your answer." and answer["thread_ts"] == "1729999327.187299"


async def test_retry_and_redelivery_to_another_replica_answer_once(make_bot: BotFactory) -> None:
    model = ScriptedChatModel(default="only once")
    first, second = await make_bot({"offline": model}), await make_bot({"offline": model})
    ts = first.slack.add_message("C0GENERAL", "<@U0BOT> ask hi", user="U0SAM")
    event = {
        "type": "app_mention",
        "user": "U0SAM",
        "text": "<@U0BOT> ask hi",
        "ts": ts,
        "channel": "C0GENERAL",
    }
    results = await asyncio.gather(
        first.event(event, event_id="EvSAME1"),
        first.event(event, event_id="EvSAME1", retry_num=1),
        second.event(event, event_id="EvSAME1", retry_num=2),
    )
    assert [r.status_code for r in results] == [200, 200, 200]
    await first.idle()
    await second.idle()
    assert first.answer_texts() == ["only once"]


async def test_a_retry_whose_first_delivery_was_lost_is_answered(slack_bot: BotEnv) -> None:
    _, ts = await slack_bot.mention("ask hi", retry_num=1)
    await slack_bot.idle()
    assert len(slack_bot.replies("C0GENERAL", ts)) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"x-slack-signature": "v0=deadbeef"},
        {"x-slack-request-timestamp": str(int(time.time()) - 6 * 60)},
        {"x-slack-request-timestamp": "not-a-number"},
        {"x-slack-signature": ""},
    ],
)
async def test_bad_signature_or_stale_timestamp_is_401(
    slack_bot: BotEnv, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(
        {
            "type": "event_callback",
            "event_id": "Ev1",
            "event": {
                "type": "app_mention",
                "user": "U0SAM",
                "text": "<@U0BOT> ask secret-body-marker",
                "ts": "1.1",
                "channel": "C0GENERAL",
            },
        }
    )
    signed = (
        sign(body, timestamp=int(time.time()) - 6 * 60)
        if "not-a-number" not in str(headers)
        else sign(body)
    )
    all_headers = {"content-type": "application/json", **signed, **headers}
    if "x-slack-signature" not in headers:
        all_headers["x-slack-signature"] = signed["x-slack-signature"]
    with caplog.at_level(logging.INFO):
        response = await slack_bot.http.post("/slack/events", content=body, headers=all_headers)
        await slack_bot.idle()
    assert response.status_code == 401
    assert slack_bot.slack.calls() == []  # nothing ran: not even auth.test
    assert "secret-body-marker" not in caplog.text  # raw bodies are never logged


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("{not json", "application/json", 400),
        (json.dumps(["a list"]), "application/json", 400),
        (json.dumps({"type": "event_callback"}), "application/json", 400),
        ("payload=%7Bbroken", "application/x-www-form-urlencoded", 400),
        ("payload=%5B%5D", "application/x-www-form-urlencoded", 400),
        ("command=%2Fswitchboard&text=help", "application/x-www-form-urlencoded", 400),
        ("hello", "text/plain", 415),
    ],
)
async def test_malformed_bodies_get_4xx(
    slack_bot: BotEnv, body: str, content_type: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"content-type": content_type, **sign(body)}
    with caplog.at_level(logging.WARNING):
        response = await slack_bot.http.post("/slack/events", content=body, headers=headers)
    assert response.status_code == status
    assert "rejected Slack request" in caplog.text
    assert slack_bot.slack.calls() == []


async def test_non_utf8_body_is_400(slack_bot: BotEnv) -> None:
    import hashlib
    import hmac

    from tests.bot.conftest import SIGNING_SECRET

    raw, ts = b"\xff\xfe{", str(int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), b"v0:" + ts.encode() + b":" + raw, hashlib.sha256)
    headers = {
        "content-type": "application/json",
        "x-slack-request-timestamp": ts,
        "x-slack-signature": "v0=" + digest.hexdigest(),
    }
    response = await slack_bot.http.post("/slack/events", content=raw, headers=headers)
    assert response.status_code == 400


async def test_unhandled_event_type_is_acked_200(slack_bot: BotEnv) -> None:
    response = await slack_bot.event(
        {"type": "channel_rename", "channel": {"id": "C0GENERAL", "name": "x"}}
    )
    assert response.status_code == 200


async def test_bot_and_edited_messages_are_ignored(make_bot: BotFactory) -> None:
    model = ScriptedChatModel(default="answer")
    env = await make_bot({"offline": model})
    _, root = await env.mention("ask start a thread")
    await env.idle()
    before = len(env.slack.calls("chat.postMessage"))
    await env.message("from another bot", thread_ts=root, user="U0OTHERBOT", bot_id="B0OTHER")
    await env.message("from myself", thread_ts=root, user="U0BOT")
    await env.event(
        {
            "type": "message",
            "subtype": "message_changed",
            "channel": "C0GENERAL",
            "ts": "9.9",
            "message": {"text": "edited", "user": "U0SAM", "thread_ts": root},
        }
    )
    await env.event(
        {
            "type": "message",
            "subtype": "message_deleted",
            "channel": "C0GENERAL",
            "ts": "9.8",
            "previous_message": {"text": "x"},
        }
    )
    await env.idle()
    assert len(env.slack.calls("chat.postMessage")) == before


async def test_rate_limited_reply_is_delayed_and_delivered(make_bot: BotFactory) -> None:
    env = await make_bot({"offline": ScriptedChatModel([reply("eventually")])})
    env.slack.fail_next("chat.postMessage", status=429, retry_after=1)
    started = time.monotonic()
    _, ts = await env.mention("ask hi")
    await env.idle()
    assert [m["text"] for m in env.replies("C0GENERAL", ts)] == ["eventually"]
    assert time.monotonic() - started >= 1.0
    statuses = [c.status for c in env.slack.calls("chat.postMessage")]
    assert statuses[0] == 429


async def test_model_output_cannot_mass_mention(make_bot: BotFactory) -> None:
    evil = "Attention <!channel> and <!here> @everyone: click <https://evil.example|bank> & win"
    env = await make_bot({"offline": ScriptedChatModel([reply(evil)])})
    _, ts = await env.mention("ask hi")
    await env.idle()
    posted = env.replies("C0GENERAL", ts)[0]
    everything = posted["text"] + json.dumps(posted["blocks"])
    for forbidden in ("<!channel>", "<!here>", "<!everyone>", "<https://evil.example|bank>"):
        assert forbidden not in everything
    assert "&amp;" in posted["text"]


async def test_card_number_never_reaches_model_slack_or_log(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    pan = "4111-1111-1111-1111"

    def echo(messages):  # type: ignore[no-untyped-def]
        return reply(f"You said: {messages[-1].content}")

    model = ScriptedChatModel([echo])
    env = await make_bot({"offline": model})
    with caplog.at_level(logging.DEBUG):
        _, ts = await env.mention(f"ask my card {pan} was charged twice")
        await env.idle()
    digits = pan.replace("-", "")
    assert digits not in texts(model).replace("-", "").replace(" ", "")
    answer = env.replies("C0GENERAL", ts)[0]
    assert "[card ****1111]" in answer["text"]
    sent = json.dumps([c.args for c in env.slack.calls() if c.method != "auth.test"])
    assert digits not in sent.replace("-", "")
    assert pan not in caplog.text and digits not in caplog.text


async def test_ack_is_fast_even_when_the_model_is_slow(make_bot: BotFactory) -> None:
    env = await make_bot({"offline": ScriptedChatModel([reply("slow answer")], delay=10)})
    started = time.monotonic()
    response, ts = await env.mention("ask take your time")
    ack_seconds = time.monotonic() - started
    assert response.status_code == 200
    assert ack_seconds < 1.0
    # The user sees that work is under way before the answer: the reaction, and a
    # placeholder in the thread that the answer will replace.
    await env.slack.wait_for("reactions.add", timeout=3)
    await env.slack.wait_for("chat.postMessage", timeout=3)
    assert [m["text"] for m in env.replies("C0GENERAL", ts)] == [WORKING_TEXT]


async def test_status_reaction_is_removed_after_the_answer(slack_bot: BotEnv) -> None:
    _, ts = await slack_bot.mention("ask hello")
    await slack_bot.idle()
    added = slack_bot.slack.calls("reactions.add")
    removed = slack_bot.slack.calls("reactions.remove")
    assert added and removed and added[0].args["timestamp"] == ts


async def test_reset_in_a_thread_forgets_it(make_bot: BotFactory) -> None:
    model = ScriptedChatModel([reply("Noted."), reply("No idea.")])
    env = await make_bot({"offline": model})
    _, ts = await env.mention("ask the code word is tulip")
    await env.idle()
    await env.mention("reset", thread_ts=ts)
    await env.idle()
    assert env.replies("C0GENERAL", ts)[-1]["text"].startswith("Forgotten")
    await env.mention("ask what is the code word?", thread_ts=ts)
    await env.idle()
    assert "tulip" not in texts(model)


async def test_error_reply_has_a_reference_and_no_internals(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    model = ScriptedChatModel([RuntimeError("upstream said: api key sk-live-123 revoked")] * 5)
    env = await make_bot({"offline": model})
    with caplog.at_level(logging.INFO):
        _, ts = await env.mention("ask hi")
        await env.idle()
    text = env.replies("C0GENERAL", ts)[0]["text"]
    assert "reference" in text and "sk-live" not in text and "Traceback" not in text
    ref = text.split("`")[1]
    assert ref in caplog.text


async def test_streaming_answers(make_bot: BotFactory) -> None:
    long = "First line of the answer.\nSecond line, with a card 4111 1111 1111 1111.\nThird."
    env = await make_bot(
        {"offline": ScriptedChatModel([reply(long)])}, SWITCHBOARD_STREAMING="true"
    )
    _, ts = await env.mention("ask stream please")
    await env.idle()
    starts = env.slack.calls("chat.startStream")
    appends = env.slack.calls("chat.appendStream")
    stops = env.slack.calls("chat.stopStream")
    assert len(starts) == 1 and starts[0].args["thread_ts"] == ts
    assert appends and len(stops) == 1
    streamed = starts[0].args["markdown_text"] + "".join(a.args["markdown_text"] for a in appends)
    assert "Third." in streamed and "[card ****1111]" in streamed
    assert "4111 1111 1111 1111" not in streamed


async def test_a_message_acked_while_redis_is_down_is_answered_when_it_returns(
    make_bot: BotFactory,
) -> None:
    """Redis goes away: the mention is still acked and stored; its turn is retried (no
    apology, no silence: the placeholder says it is being worked on) and answered, in the
    same placeholder, once Redis is back. The bot answers normally afterwards."""
    env = await make_bot({"offline": ScriptedChatModel(default="back to normal")})
    server = env.services.redis.connection_pool.connection_kwargs.get("server")
    if server is None:
        pytest.skip("a Redis outage is simulated with fakeredis only (the embedded backend)")
    server.connected = False
    response, ts = await env.mention("ask are you there?")
    assert response.status_code == 200
    await asyncio.sleep(1.5)  # at least one attempt failed while Redis was down
    during = [m["text"] for m in env.replies("C0GENERAL", ts)]
    assert all("unreachable" not in text for text in during), during
    server.connected = True
    await env.idle(timeout=30)
    replies = env.replies("C0GENERAL", ts)
    assert [m["text"] for m in replies] == ["back to normal"]
    _, ts = await env.mention("ask and now?")
    await env.idle()
    assert env.replies("C0GENERAL", ts)[-1]["text"] == "back to normal"


async def test_slack_escaping_is_undone_before_the_model(make_bot: BotFactory) -> None:
    model = ScriptedChatModel([reply("ok")])
    env = await make_bot({"offline": model})
    await env.mention("ask is 3 &lt; 5 &amp;&amp; 7 &gt; 2?")
    await env.idle()
    assert "is 3 < 5 && 7 > 2?" in texts(model)
