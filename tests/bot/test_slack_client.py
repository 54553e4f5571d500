"""The Web API client's retries, against the fake Slack server over real HTTP."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.client import create_web_client, no_rate_limit_wait
from tests.fakes.slack_api import FakeSlackApi, slack_api_server


@pytest.fixture
def slack() -> Iterator[FakeSlackApi]:
    with slack_api_server() as server:
        server.add_user("U1", "alice")
        server.add_channel("C1", "general", members=["U1"])
        yield server


def client_for(slack: FakeSlackApi, **options: float | int) -> AsyncWebClient:
    settings: dict[str, float | int] = {"backoff": 0.01, "timeout": 5} | options
    return create_web_client(token=slack.token, base_url=slack.base_url, **settings)  # type: ignore[arg-type]


async def test_rate_limited_call_waits_for_retry_after_then_succeeds(
    slack: FakeSlackApi, caplog: pytest.LogCaptureFixture
) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=1)
    client = client_for(slack)

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="switchboard.bot.slack.client"):
        response = await client.chat_postMessage(channel="C1", text="hello")
    elapsed = time.monotonic() - started

    assert response["ok"] is True
    assert elapsed >= 1.0
    assert [c.status for c in slack.calls("chat.postMessage")] == [429, 200]
    assert [m["text"] for m in slack.messages("C1")] == ["hello"]
    waits = [r for r in caplog.records if "rate limited" in r.getMessage()]
    assert waits and waits[0].__dict__["retry_after"] == 1.0


async def test_a_call_that_must_not_wait_fails_at_once_on_a_429(slack: FakeSlackApi) -> None:
    """Cosmetic calls (the status reaction) never wait out a rate limit; after the block
    the client waits again as usual, and server errors still retry inside it."""
    slack.fail_next("reactions.add", status=429, retry_after=5)
    client = client_for(slack)
    started = time.monotonic()
    with no_rate_limit_wait(), pytest.raises(SlackApiError) as raised:
        await client.reactions_add(channel="C1", timestamp="1.0", name="eyes")
    assert time.monotonic() - started < 1.0
    assert raised.value.response["error"] == "ratelimited"
    assert len(slack.calls("reactions.add")) == 1

    root = (await client.chat_postMessage(channel="C1", text="hi"))["ts"]
    slack.fail_next("reactions.add", status=503)
    with no_rate_limit_wait():
        await client.reactions_add(channel="C1", timestamp=root, name="eyes")
    slack.fail_next("reactions.add", status=429, retry_after=1)
    started = time.monotonic()
    await client.reactions_add(channel="C1", timestamp=root, name="tada")
    assert time.monotonic() - started >= 1.0
    assert [c.status for c in slack.calls("reactions.add")] == [429, 503, 200, 429, 200]


async def test_retry_after_longer_than_the_cap_fails_at_once(slack: FakeSlackApi) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=120)
    client = client_for(slack, max_retry_after=5)

    started = time.monotonic()
    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel="C1", text="hello")

    assert time.monotonic() - started < 1.0
    assert raised.value.response["error"] == "ratelimited"
    assert raised.value.response.headers["Retry-After"] == "120"
    assert len(slack.calls("chat.postMessage")) == 1
    assert slack.messages("C1") == []


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_error_is_retried_then_succeeds(slack: FakeSlackApi, status: int) -> None:
    slack.fail_next("chat.postMessage", status=status)

    response = await client_for(slack).chat_postMessage(channel="C1", text="hello")

    assert response["ok"] is True
    assert [c.status for c in slack.calls("chat.postMessage")] == [status, 200]
    assert len(slack.messages("C1")) == 1


async def test_dropped_connection_is_retried_then_succeeds(slack: FakeSlackApi) -> None:
    slack.fail_next("conversations.history", drop=True)

    response = await client_for(slack).conversations_history(channel="C1")

    assert response["ok"] is True
    assert [c.status for c in slack.calls("conversations.history")] == [0, 200]


async def test_gives_up_after_max_retries_with_slack_api_error(slack: FakeSlackApi) -> None:
    slack.fail_next("chat.postMessage", status=500, times=10)

    with pytest.raises(SlackApiError) as raised:
        await client_for(slack, max_retries=2).chat_postMessage(channel="C1", text="hello")

    assert raised.value.response.status_code == 500
    assert len(slack.calls("chat.postMessage")) == 3  # the first try and two retries
    assert slack.messages("C1") == []


async def test_gives_up_on_a_connection_that_keeps_dropping(slack: FakeSlackApi) -> None:
    slack.fail_next("auth.test", drop=True, times=10)

    with pytest.raises(aiohttp.ClientError):
        await client_for(slack, max_retries=2).auth_test()

    assert len(slack.calls("auth.test")) == 3


async def test_retries_are_counted_across_failure_kinds(slack: FakeSlackApi) -> None:
    slack.fail_next("auth.test", status=429, retry_after=0)
    slack.fail_next("auth.test", status=503)
    slack.fail_next("auth.test", drop=True)

    response = await client_for(slack, max_retries=3).auth_test()

    assert response["user_id"] == slack.bot_user_id
    assert [c.status for c in slack.calls("auth.test")] == [429, 503, 0, 200]

    slack.reset_calls()
    slack.fail_next("auth.test", status=429, retry_after=0)
    slack.fail_next("auth.test", status=503)
    slack.fail_next("auth.test", drop=True)
    with pytest.raises(aiohttp.ClientError):
        await client_for(slack, max_retries=2).auth_test()
    assert len(slack.calls("auth.test")) == 3


async def test_slack_errors_are_not_retried(slack: FakeSlackApi) -> None:
    client = client_for(slack)

    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel="C404", text="hello")

    assert raised.value.response["error"] == "channel_not_found"
    assert len(slack.calls("chat.postMessage")) == 1


async def test_a_wrong_token_is_refused(slack: FakeSlackApi) -> None:
    client = create_web_client(token="xoxb-wrong", base_url=slack.base_url)

    with pytest.raises(SlackApiError) as raised:
        await client.auth_test()

    assert raised.value.response["error"] == "invalid_auth"


async def test_base_url_without_trailing_slash(slack: FakeSlackApi) -> None:
    client = create_web_client(token=slack.token, base_url=slack.base_url.rstrip("/"))

    assert (await client.auth_test())["team_id"] == slack.team_id


def test_invalid_max_retries_is_refused() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        create_web_client(token="xoxb-x", base_url="http://127.0.0.1:9/api/", max_retries=-1)


# -- the fake server itself ------------------------------------------------------------------


async def test_fake_accepts_form_and_json_bodies(slack: FakeSlackApi) -> None:
    client = client_for(slack)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]

    await client.api_call(
        "chat.postMessage",
        data={"channel": "C1", "text": "form", "blocks": '[{"type": "divider"}]'},
    )
    await client.chat_postMessage(channel="C1", text="json", blocks=blocks)

    form, json_ = slack.messages("C1")
    assert form["text"] == "form" and form["blocks"] == [{"type": "divider"}]
    assert json_["text"] == "json" and json_["blocks"] == blocks


async def test_fake_validates_like_slack(slack: FakeSlackApi) -> None:
    client = client_for(slack)
    slack.add_channel("C2", "elsewhere", bot_is_member=False)
    cases: list[tuple[Callable[[], Awaitable[Any]], str]] = [
        (lambda: client.api_call("chat.postMessage", json={"channel": "C1"}), "no_text"),
        (lambda: client.chat_postMessage(channel="C2", text="x"), "not_in_channel"),
        (lambda: client.chat_postMessage(channel="C1", text="x" * 40_001), "msg_too_long"),
        (
            lambda: client.chat_postMessage(
                channel="C1",
                text="x",
                blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "y" * 3001}}],
            ),
            "invalid_blocks",
        ),
        (lambda: client.chat_update(channel="C1", ts="1.000001", text="x"), "message_not_found"),
        (lambda: client.users_info(user="U404"), "user_not_found"),
        (lambda: client.usergroups_users_list(usergroup="S404"), "no_such_subteam"),
        (lambda: client.conversations_replies(channel="C1", ts="1.000001"), "thread_not_found"),
        (
            lambda: client.views_open(trigger_id="expired", view={"type": "modal"}),
            "expired_trigger_id",
        ),
    ]
    for call, error in cases:
        with pytest.raises(SlackApiError) as raised:
            await call()
        assert raised.value.response["error"] == error


async def test_fake_threads_updates_and_reactions(slack: FakeSlackApi) -> None:
    client = client_for(slack)
    root = slack.add_message("C1", "question?", user="U1")

    reply = await client.chat_postMessage(channel="C1", thread_ts=root, text="thinking")
    await client.chat_update(channel="C1", ts=reply["ts"], text="answer")
    await client.reactions_add(channel="C1", timestamp=root, name="eyes")
    with pytest.raises(SlackApiError, match="already_reacted"):
        await client.reactions_add(channel="C1", timestamp=root, name="eyes")
    with pytest.raises(SlackApiError, match="cant_update_message"):
        await client.chat_update(channel="C1", ts=root, text="not mine")

    thread = slack.messages("C1", thread_ts=root)
    assert [m["text"] for m in thread] == ["question?", "answer"]
    assert thread[0]["reply_count"] == 1
    assert thread[0]["reactions"] == [{"name": "eyes", "users": ["U0BOT"], "count": 1}]
    assert [m["text"] for m in slack.messages("C1")] == ["question?"]  # replies stay in thread


async def test_fake_streams_and_assistant_state(slack: FakeSlackApi) -> None:
    client = client_for(slack)
    root = slack.add_message("C1", "summarise please", user="U1")

    await client.assistant_threads_setStatus(channel_id="C1", thread_ts=root, status="is typing…")
    started = await client.chat_startStream(channel="C1", thread_ts=root, markdown_text="Hel")
    await client.chat_appendStream(channel="C1", ts=started["ts"], markdown_text="lo")
    await client.chat_stopStream(channel="C1", ts=started["ts"], markdown_text="!")
    with pytest.raises(SlackApiError, match="message_not_in_streaming_state"):
        await client.chat_appendStream(channel="C1", ts=started["ts"], markdown_text="more")

    assert slack.message("C1", started["ts"])["text"] == "Hello!"  # type: ignore[index]
    assert slack.assistant_thread("C1", root)["status"] == "is typing…"


async def test_fake_wait_for_sees_calls_made_in_the_background(slack: FakeSlackApi) -> None:
    client = client_for(slack)

    async def later() -> None:
        await asyncio.sleep(0.05)
        await client.chat_postMessage(channel="C1", text="done")

    task = asyncio.create_task(later())
    calls = await slack.wait_for("chat.postMessage", 1, timeout=5)
    await task

    assert calls[0].args["text"] == "done"
    with pytest.raises(AssertionError, match=r"expected 2 ok chat\.postMessage"):
        await slack.wait_for("chat.postMessage", 2, timeout=0.1)


async def test_a_rate_limit_budget_of_its_own_waits_out_a_storm_other_errors_do_not(
    slack: FakeSlackApi,
) -> None:
    """A worker's client (``rate_limit_retries``) waits out more 429s than ``max_retries``
    allows, each for its ``Retry-After``; 5xx still stop at ``max_retries``."""
    slack.fail_next("chat.postMessage", status=429, retry_after=0, times=4)
    with pytest.raises(SlackApiError):
        await client_for(slack, max_retries=3).chat_postMessage(channel="C1", text="lost")
    assert [c.status for c in slack.calls("chat.postMessage")] == [429] * 4

    slack.reset_calls()
    slack.fail_next("chat.postMessage", status=429, retry_after=0, times=6)
    patient = client_for(slack, max_retries=3, rate_limit_retries=8)
    response = await patient.chat_postMessage(channel="C1", text="kept")
    assert response["ok"] is True
    assert [c.status for c in slack.calls("chat.postMessage")] == [429] * 6 + [200]
    assert [m["text"] for m in slack.messages("C1")] == ["kept"]

    slack.reset_calls()
    slack.fail_next("auth.test", status=503, times=4)
    with pytest.raises(SlackApiError):
        await patient.auth_test()
    assert len(slack.calls("auth.test")) == 4


async def test_the_fake_rate_limits_like_slack_per_window_with_retry_after(
    slack: FakeSlackApi,
) -> None:
    """The fake's limiter: N calls per window pass, the rest get 429 + Retry-After; a
    client honouring it gets every call through, later."""
    slack.rate_limit("chat.postMessage", limit=2, per=1.0)
    client = client_for(slack, max_retries=0)
    for n in range(2):
        await client.chat_postMessage(channel="C1", text=f"m{n}")
    with pytest.raises(SlackApiError) as limited:
        await client.chat_postMessage(channel="C1", text="m2")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers.get("Retry-After") == "1"
    assert slack.rate_limited("chat.postMessage") == 1

    patient = client_for(slack, max_retries=0, rate_limit_retries=5)
    started = time.monotonic()
    await asyncio.gather(*(patient.chat_postMessage(channel="C1", text=f"p{n}") for n in range(4)))
    assert time.monotonic() - started >= 1.0
    assert sorted(m["text"] for m in slack.messages("C1")) == ["m0", "m1", "p0", "p1", "p2", "p3"]
