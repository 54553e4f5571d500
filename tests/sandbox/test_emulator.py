"""The Web API emulator answers the bot as Slack would, failures included."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.http import valid_signature
from bot.slack.client import create_web_client
from sandbox.events import EventSender
from sandbox.server import RunningSandbox
from sandbox.workspace import Emulator, RateLimit, SlackError, check_blocks
from switchboard.sandbox import open_sandbox


def client_for(sb: RunningSandbox, *, token: str | None = None, retries: int = 0) -> AsyncWebClient:
    return create_web_client(
        token=token or sb.emulator.token, base_url=f"{sb.url}/api/", max_retries=retries
    )


async def slack_error(call: object) -> str:
    with pytest.raises(SlackApiError) as caught:
        await call  # type: ignore[misc]
    return str(caught.value.response["error"])


async def test_arguments_are_checked_like_slack(sandbox: RunningSandbox) -> None:
    client = client_for(sandbox)
    assert await slack_error(client.chat_postMessage(channel="C0NOPE", text="hi")) == (
        "channel_not_found"
    )
    # (slack_sdk's chat_postMessage warns before sending; api_call sends as is)
    no_text = client.api_call("chat.postMessage", json={"channel": "C0PAYMENTS"})
    assert await slack_error(no_text) == "no_text"
    assert await slack_error(client.chat_postMessage(channel="C0PAYMENTS", text="x" * 40_001)) == (
        "msg_too_long"
    )
    assert await slack_error(client.users_info(user="U0NOBODY")) == "user_not_found"
    assert await slack_error(client.usergroups_users_list(usergroup="S0NOPE")) == (
        "no_such_subteam"
    )
    assert (
        await slack_error(client.chat_update(channel="C0PAYMENTS", ts="1.000001", text="edit"))
        == "message_not_found"
    )
    wrong = client_for(sandbox, token="xoxb-wrong")
    assert await slack_error(wrong.auth_test()) == "invalid_auth"


async def test_blocks_are_validated_with_slack_sdk_models(sandbox: RunningSandbox) -> None:
    client = client_for(sandbox)
    too_long = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    with pytest.raises(SlackApiError) as caught:
        await client.chat_postMessage(channel="C0PAYMENTS", text="t", blocks=too_long)
    assert caught.value.response["error"] == "invalid_blocks"
    assert "3000" in " ".join(caught.value.response["errors"])
    unknown = [{"type": "carousel_of_dreams"}]
    assert (
        await slack_error(client.chat_postMessage(channel="C0PAYMENTS", text="t", blocks=unknown))
        == "invalid_blocks"
    )
    # A valid message is stored, given block ids as Slack does, and read back.
    good = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hello*"}}]
    posted = await client.chat_postMessage(channel="C0PAYMENTS", text="hello", blocks=good)
    history = await client.conversations_history(channel="C0PAYMENTS", limit=1)
    assert history["messages"][0]["ts"] == posted["ts"]
    assert history["messages"][0]["blocks"][0]["block_id"]


def test_check_blocks_lists_every_problem() -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}},
        {"type": "divider"},
        "not a block",
    ]
    with pytest.raises(SlackError) as caught:
        check_blocks(blocks, limit=50)
    errors = caught.value.extra["errors"]
    assert len(errors) == 2
    assert "/blocks/0" in errors[0] and "/blocks/2" in errors[1]


async def test_a_busy_channel_gets_429_with_retry_after(tmp_path: object) -> None:
    emulator = Emulator(
        token="xoxb-t", rate_limit=RateLimit(per_second=0.5, burst=2), clock=lambda: 1000.0
    )
    emulator.add_channel("C1", "one", members=[emulator.bot_user_id])
    emulator.add_channel("C2", "two", members=[emulator.bot_user_id])
    statuses = [
        emulator.call("chat.postMessage", {"channel": "C1", "text": "hi"}, "xoxb-t")[0]
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    status, headers, body = emulator.call(
        "chat.postMessage", {"channel": "C1", "text": "hi"}, "xoxb-t"
    )
    assert (status, body["error"]) == (429, "ratelimited")
    assert int(headers["Retry-After"]) == 2  # one write per two seconds
    # Other channels have their own budget.
    assert emulator.call("chat.postMessage", {"channel": "C2", "text": "hi"}, "xoxb-t")[0] == 200


async def test_429_over_http_and_the_bot_client_waits_it_out(tmp_path: object) -> None:
    from pathlib import Path

    from tests.sandbox.conftest import options

    limited = options(Path(str(tmp_path)), rate_limit=RateLimit(per_second=1, burst=1))
    async with open_sandbox(limited) as sb:
        async with httpx.AsyncClient() as http:
            headers = {"Authorization": f"Bearer {sb.emulator.token}"}
            first = await http.post(
                f"{sb.url}/api/chat.postMessage",
                headers=headers,
                json={"channel": "C0PAYMENTS", "text": "a"},
            )
            second = await http.post(
                f"{sb.url}/api/chat.postMessage",
                headers=headers,
                json={"channel": "C0PAYMENTS", "text": "b"},
            )
        assert first.status_code == 200
        assert second.status_code == 429
        assert second.headers["Retry-After"] == "1"
        # The bot's client honours Retry-After and gets through.
        started = time.monotonic()
        posted = await client_for(sb, retries=2).chat_postMessage(channel="C0PAYMENTS", text="c")
        assert posted["ok"] and time.monotonic() - started >= 0.5


async def test_what_the_sandbox_sends_verifies_with_the_bot_secret() -> None:
    seen: list[httpx.Request] = []

    def capture(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(capture)) as http:
        sender = EventSender(
            url="http://bot/slack/events",
            signing_secret="s3cret",
            team_id="T0",
            app_id="A0",
            bot_user_id="U0BOT",
            http=http,
        )
        await sender.event({"type": "app_mention", "text": "<@U0BOT> hi", "user": "U1"})
        await sender.command(
            {"command": "/switchboard", "text": "help", "user_id": "U1", "channel_id": "C1"}
        )
        await sender.interaction({"type": "block_actions", "actions": []})
    assert len(seen) == 3
    for request in seen:
        body = request.content
        timestamp = request.headers["x-slack-request-timestamp"]
        signature = request.headers["x-slack-signature"]
        assert valid_signature("s3cret", body, timestamp, signature, now=time.time())
        assert not valid_signature("other", body, timestamp, signature, now=time.time())
        assert SignatureVerifier("s3cret").is_valid(body.decode(), timestamp, signature)
    assert json.loads(seen[0].content)["event"]["type"] == "app_mention"
    assert seen[1].headers["content-type"] == "application/x-www-form-urlencoded"


async def test_bad_signature_is_refused_by_the_bot(sandbox: RunningSandbox) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{sandbox.url}/slack/events",
            content=b'{"type":"event_callback"}',
            headers={
                "x-slack-request-timestamp": str(int(time.time())),
                "x-slack-signature": "v0=bad",
            },
        )
    assert response.status_code == 401
