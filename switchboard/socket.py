"""Socket Mode: the same Bolt app over a WebSocket, with a silence watchdog.

slack_sdk's client already reconnects when its ping/pong fails. The watchdog covers the
other failure seen in production: a connection that stays "up" but delivers nothing (no
events, no pongs) — after ``silence`` seconds without any frame it forces a new
connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.errors import SlackApiError

from bot.app import Bot
from skills import tracing
from switchboard.settings import ConfigError

log = logging.getLogger(__name__)


class SilenceWatchdog:
    """Reconnects a Socket Mode client that has been silent for too long."""

    def __init__(
        self,
        client: Any,
        *,
        silence: float = 60.0,
        check_every: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._silence = silence
        self._check_every = check_every
        self._clock = clock
        self._last = clock()
        self.reconnects = 0

    async def touch(self, *_: Any) -> None:
        """Record activity (registered as a message listener of the client)."""
        self._last = self._clock()

    def silent_for(self) -> float:
        """Seconds since the last frame: an event we saw, or a pong slack_sdk saw.

        slack_sdk stamps pongs with ``time.time()``, so ``clock`` must count wall-clock
        seconds too (the default; tests pass a fake that starts at ``time.time()``).
        """
        pong = getattr(self._client, "last_ping_pong_time", None) or 0.0
        return self._clock() - max(self._last, float(pong))

    async def check(self) -> bool:
        """Reconnect if silent; True when it did."""
        if self.silent_for() <= self._silence:
            return False
        log.warning("socket mode connection silent for %.0fs; reconnecting", self.silent_for())
        self.reconnects += 1
        self._last = self._clock()
        try:
            await self._client.connect_to_new_endpoint(force=True)
        except Exception:  # the next check tries again
            log.exception("socket mode reconnect failed")
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._check_every)
            await self.check()


async def check_app_token(bot: Bot, app_token: str) -> str:
    """Open a Socket Mode URL once, so a wrong token stops start-up with one clear line
    instead of slack_sdk retrying forever; returns the URL to connect to."""
    try:
        response = await bot.client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        error = str(exc.response.get("error", "unknown_error"))
        raise ConfigError("SLACK_APP_TOKEN", f"Slack refused it ({error})") from None
    return str(response["url"])


async def serve_socket_mode(
    bot: Bot,
    *,
    app_token: str,
    ping_interval: float = 10.0,
    silence: float = 60.0,
    check_every: float = 5.0,
    clock: Callable[[], float] = time.time,
) -> None:
    """Connect and serve until cancelled."""
    url = await check_app_token(bot, app_token)
    handler = AsyncSocketModeHandler(
        bot.app, app_token, web_client=bot.client, ping_interval=ping_interval
    )
    handler.client.wss_uri = url
    listeners = handler.client.socket_mode_request_listeners
    listeners[:] = [tracing.wrap_receiver(f, transport="socket") for f in listeners]
    watchdog = SilenceWatchdog(
        handler.client, silence=silence, check_every=check_every, clock=clock
    )
    handler.client.on_message_listeners.append(watchdog.touch)
    try:
        await handler.connect_async()  # type: ignore[no-untyped-call]
        log.info("connected over Socket Mode")
        await watchdog.run()
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
