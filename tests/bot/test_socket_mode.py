"""Socket Mode end to end: a local fake of Slack's WebSocket, the real Bolt app, the fake Web API.

The bot connects exactly as in production (``apps.connections.open`` with the app-level
token, then the WebSocket URL it returns); events arrive as envelopes, acks go back with
their ``envelope_id``, answers go to the fake Web API. The silence watchdog is driven by a
clock the test moves, against a real slack_sdk Socket Mode client.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient

from bot.app import Bot
from bot.slack.client import create_web_client
from switchboard.serve import build_bot
from switchboard.socket import SilenceWatchdog, serve_socket_mode
from tests.bot.conftest import SIGNING_SECRET, TEAM, BotFactory
from tests.fakes.chat import ScriptedChatModel, reply
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.socket_mode import FakeSocketMode, SocketConnection, wait_until

# Longer than any test: slack_sdk's own ping/pong reconnect (and aiohttp's heartbeat) must
# not fire, so that whatever reconnects in a test is the watchdog.
QUIET_PING_INTERVAL = 30.0


@pytest.fixture
async def slack_socket(slack_api: FakeSlackApi) -> AsyncIterator[FakeSocketMode]:
    async with FakeSocketMode(upstream=slack_api.base_url) as fake:
        yield fake


@contextlib.asynccontextmanager
async def socket_replica(
    make_bot: BotFactory,
    fake: FakeSocketMode,
    models: Mapping[str, BaseChatModel] | None = None,
) -> AsyncIterator[tuple[Bot, SocketConnection]]:
    """A bot replica served by ``serve_socket_mode``, connected to ``fake``.

    It is built like the HTTP replicas of ``make_bot`` (same database, Redis and fake
    Slack), except that its Web API client talks to ``fake``, which answers
    ``apps.connections.open`` itself and forwards every other method to the fake Web API.
    """
    env = await make_bot(models)
    client = create_web_client(token=env.slack.token, base_url=fake.api_url, backoff=0.01)
    bot = build_bot(env.services, client=client, signing_secret=SIGNING_SECRET)
    before = len(fake.connections)
    serving = asyncio.create_task(
        serve_socket_mode(bot, app_token=fake.app_token, ping_interval=QUIET_PING_INTERVAL)
    )
    try:
        await wait_until(
            lambda: len(fake.connections) > before or serving.done(),
            what="the bot to connect over Socket Mode",
        )
        if serving.done():
            serving.result()  # raises what stopped it
            raise AssertionError("serve_socket_mode returned without connecting")
        yield bot, fake.connections[before]
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        await bot.worker.drain(5.0)


def mention(slack: FakeSlackApi, text: str, *, channel: str = "C0GENERAL") -> dict[str, Any]:
    """Seed a message mentioning the bot and return the ``app_mention`` event for it."""
    ts = slack.add_message(channel, f"<@U0BOT> {text}", user="U0SAM")
    return {
        "type": "app_mention",
        "user": "U0SAM",
        "text": f"<@U0BOT> {text}",
        "ts": ts,
        "channel": channel,
        "team": TEAM,
    }


def bot_replies(slack: FakeSlackApi, channel: str, thread_ts: str) -> list[str]:
    return [m["text"] for m in slack.messages(channel, thread_ts) if m.get("bot_id")]


# -- events over the socket ------------------------------------------------------------------


async def test_mention_over_the_socket_is_acked_and_answered_in_its_thread(
    make_bot: BotFactory, slack_api: FakeSlackApi, slack_socket: FakeSocketMode
) -> None:
    model = ScriptedChatModel([reply("Refunds over 500 EUR need a lead's approval.")])
    async with socket_replica(make_bot, slack_socket, {"offline": model}) as (bot, link):
        event = mention(slack_api, "ask what is our refund policy?")

        envelope_id = await link.send_event(event)
        ack = await link.wait_for_ack(envelope_id)
        await bot.idle()

    assert ack == {"envelope_id": envelope_id}  # an events_api ack carries no payload
    assert slack_socket.opens == 1  # the app-level token was accepted
    assert bot_replies(slack_api, "C0GENERAL", event["ts"]) == [
        "Refunds over 500 EUR need a lead's approval."
    ]
    # Every Web API call went out with the bot token, none with the app-level token.
    assert {c.token for c in slack_api.calls()} == {slack_api.token}


async def test_event_delivered_twice_over_the_socket_is_answered_once(
    make_bot: BotFactory, slack_api: FakeSlackApi, slack_socket: FakeSocketMode
) -> None:
    model = ScriptedChatModel([reply("Once."), reply("Twice?!")])
    async with socket_replica(make_bot, slack_socket, {"offline": model}) as (bot, link):
        event = mention(slack_api, "ask is the payout batch done?")
        first = await link.send_event(event, event_id="Ev0SOCKETDUP")
        second = await link.send_event(
            event, event_id="Ev0SOCKETDUP", retry_attempt=1, retry_reason="timeout"
        )
        # Both deliveries are acked, or Slack would keep retrying the second one.
        await link.wait_for_ack(first)
        await link.wait_for_ack(second)
        await bot.idle()

    assert bot_replies(slack_api, "C0GENERAL", event["ts"]) == ["Once."]
    assert len(model.calls) == 1


async def test_event_delivered_over_the_socket_and_over_http_is_answered_once(
    make_bot: BotFactory, slack_api: FakeSlackApi, slack_socket: FakeSocketMode
) -> None:
    socket_model = ScriptedChatModel([reply("Answered over the socket.")])
    http_model = ScriptedChatModel([reply("Answered over HTTP.")])
    http_replica = await make_bot({"offline": http_model})
    async with socket_replica(make_bot, slack_socket, {"offline": socket_model}) as (bot, link):
        event = mention(slack_api, "ask who is on call?")
        await link.wait_for_ack(await link.send_event(event, event_id="Ev0TWOREPLICAS"))
        await bot.idle()
        # Slack re-delivers the same event to another replica over HTTP.
        response = await http_replica.event(event, event_id="Ev0TWOREPLICAS", retry_num=1)
        await http_replica.idle()

    assert response.status_code == 200  # acked, so Slack stops retrying
    # Both replicas share the run queue, so either one's worker may run the turn — once.
    replies = bot_replies(slack_api, "C0GENERAL", event["ts"])
    assert replies in (["Answered over the socket."], ["Answered over HTTP."])
    assert len(socket_model.calls) + len(http_model.calls) == 1


# -- the silence watchdog ------------------------------------------------------------------


class FakeClock:
    """Wall-clock seconds that only move when told (starting at the real time, because
    slack_sdk stamps pongs with ``time.time()``)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextlib.asynccontextmanager
async def watched_client(
    fake: FakeSocketMode,
    *,
    silence: float,
    check_every: float = 0.01,
    clock: FakeClock | None = None,
    ping_interval: float = QUIET_PING_INTERVAL,
) -> AsyncIterator[tuple[SilenceWatchdog, SocketConnection]]:
    """A slack_sdk Socket Mode client connected to ``fake``, watched as ``serve_socket_mode``
    watches it (``touch`` on every message), with the watchdog's loop running."""
    web = create_web_client(token="xoxb-unused", base_url=fake.api_url, backoff=0.01)
    client = SocketModeClient(app_token=fake.app_token, web_client=web, ping_interval=ping_interval)
    watchdog = SilenceWatchdog(
        client, silence=silence, check_every=check_every, clock=clock or time.time
    )
    client.on_message_listeners.append(watchdog.touch)
    frames: list[object] = []

    async def record(frame: object) -> None:
        frames.append(frame)

    client.on_message_listeners.append(record)
    running: asyncio.Task[None] | None = None
    try:
        await client.connect()  # type: ignore[no-untyped-call]
        link = await fake.wait_for_connection(1)
        # The clock must not move before the hello is in, or the hello resets the silence.
        await wait_until(lambda: bool(frames), what="the hello message")
        running = asyncio.create_task(watchdog.run())
        yield watchdog, link
    finally:
        if running is not None:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        await client.close()  # type: ignore[no-untyped-call]


async def test_watchdog_replaces_a_connection_that_went_silent(
    slack_socket: FakeSocketMode,
) -> None:
    clock = FakeClock()
    async with watched_client(slack_socket, silence=60, clock=clock) as (watchdog, first):
        clock.advance(59)
        await asyncio.sleep(0.05)  # several checks: not silent for long enough yet
        assert len(slack_socket.connections) == 1

        first.mute()  # open, but nothing comes through any more (no events, no pongs)
        clock.advance(2)
        second = await slack_socket.wait_for_connection(2)
        await wait_until(lambda: first.closed, what="the silent connection to be closed")

        # The new connection came from a fresh apps.connections.open, and its frames keep
        # it alive: 70 s after the switch, but only 40 s after its last event.
        assert slack_socket.opens == 2
        assert watchdog.reconnects == 1
        clock.advance(30)
        await second.send_event({"type": "reaction_added", "user": "U0SAM"})
        await wait_until(lambda: watchdog.silent_for() == 0, what="the watchdog to see a frame")
        clock.advance(40)
        await asyncio.sleep(0.05)  # several checks
        assert watchdog.reconnects == 1
    assert len(slack_socket.connections) == 2


async def test_watchdog_keeps_a_connection_that_keeps_talking(
    slack_socket: FakeSocketMode,
) -> None:
    clock = FakeClock()
    async with watched_client(slack_socket, silence=60, clock=clock) as (watchdog, link):
        for _ in range(5):  # 200 s in all, but never 60 s without a frame
            clock.advance(40)
            await link.send_event({"type": "reaction_added", "user": "U0SAM"})
            await wait_until(lambda: watchdog.silent_for() == 0, what="the frame to arrive")
        await asyncio.sleep(0.05)  # several more checks
        assert watchdog.reconnects == 0
    assert len(slack_socket.connections) == 1
    assert slack_socket.opens == 1


async def test_watchdog_keeps_a_quiet_connection_that_answers_pings(
    slack_socket: FakeSocketMode,
) -> None:
    # A workspace with no events for a while: only pongs show that the link is alive.
    watched = watched_client(slack_socket, silence=0.5, check_every=0.02, ping_interval=0.1)
    async with watched as (watchdog, link):
        await wait_until(lambda: link.pings >= 2, what="pings from the client")
        await asyncio.sleep(1.0)  # twice the silence allowed, with pongs flowing
        assert watchdog.reconnects == 0
        assert link.pings >= 6
    assert len(slack_socket.connections) == 1


# -- the fake itself -------------------------------------------------------------------------


async def test_fake_refuses_a_bot_token_for_connections_open(
    slack_socket: FakeSocketMode,
) -> None:
    web = create_web_client(token="xoxb-unused", base_url=slack_socket.api_url, max_retries=0)
    with pytest.raises(SlackApiError) as raised:
        await web.apps_connections_open(app_token="xoxb-not-an-app-token")
    assert raised.value.response["error"] == "not_allowed_token_type"
    response = await web.apps_connections_open(app_token=slack_socket.app_token)
    assert str(response["url"]).startswith("ws://127.0.0.1:")


async def test_a_wrong_app_token_stops_start_up_with_one_line(
    slack_socket: FakeSocketMode,
) -> None:
    from types import SimpleNamespace

    from switchboard.settings import ConfigError
    from switchboard.socket import check_app_token

    web = create_web_client(token="xoxb-unused", base_url=slack_socket.api_url, backoff=0.01)
    bot = SimpleNamespace(client=web)
    with pytest.raises(ConfigError) as info:
        await check_app_token(bot, "xoxb-a-bot-token-not-an-app-token")  # type: ignore[arg-type]
    assert str(info.value).startswith("SLACK_APP_TOKEN: Slack refused it (")
    url = await check_app_token(bot, slack_socket.app_token)  # type: ignore[arg-type]
    assert url.startswith("ws://127.0.0.1:")
