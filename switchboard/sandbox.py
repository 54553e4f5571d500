"""The sandboxed bot, as the composition root builds it for ``switchboard sandbox``.

:mod:`sandbox.server` runs the local workspace and decides what the bot sees of the
environment (:class:`~sandbox.server.BotEnvironment`); :func:`open_sandbox_bot` builds the
bot from that exactly as ``switchboard serve`` does (settings, services, Bolt app, HTTP
app, scheduler and approval sweep). :func:`open_sandbox` and :func:`check_recording` are
the sandbox's own functions with this opener bound: what the command line, the tests and
the replays use.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from bot.app import Bot
from bot.http import create_http_app
from bot.slack.client import create_web_client
from sandbox import server
from sandbox.server import BotConfigError, BotEnvironment, RunningSandbox, SandboxOptions
from switchboard.serve import build_bot, metrics_listener, run_features
from switchboard.services import Services, open_services
from switchboard.settings import ConfigError, Settings

__all__ = ["SandboxBot", "check_recording", "open_sandbox", "open_sandbox_bot", "run_sandbox"]


@dataclass(slots=True)
class SandboxBot:
    """The sandboxed bot (a :class:`sandbox.server.HostedBot`) and its parts."""

    settings: Settings
    services: Services
    bot: Bot
    http_app: Starlette

    @property
    def model(self) -> str:
        return self.settings.model

    @property
    def metrics_port(self) -> int | None:
        return self.settings.metrics_port

    async def idle(self, timeout: float = 10.0) -> None:
        await self.bot.idle(timeout)

    @contextlib.asynccontextmanager
    async def features(self) -> AsyncIterator[None]:
        """What every bot process runs beside the listeners: metrics port, approval
        sweep, scheduler."""
        async with (
            metrics_listener(self.bot, host="127.0.0.1", port=self.settings.metrics_port),
            run_features(self.bot, self.services),
        ):
            yield

    async def drain(self, timeout: float) -> None:
        await self.bot.worker.drain(timeout=timeout)


@contextlib.asynccontextmanager
async def open_sandbox_bot(environment: BotEnvironment) -> AsyncIterator[SandboxBot]:
    """Build the sandboxed bot from ``environment``; a bad variable is a
    :class:`~sandbox.server.BotConfigError` naming it."""
    try:
        settings = Settings.from_env(environment.settings)
        settings.require("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")
    except ConfigError as exc:
        raise BotConfigError(str(exc)) from None
    assert settings.slack_bot_token is not None and settings.slack_signing_secret is not None
    token = settings.slack_bot_token.get_secret_value()
    secret = settings.slack_signing_secret.get_secret_value()
    async with open_services(settings, env=environment.skills, watch_skills=True) as services:
        client = create_web_client(token=token, base_url=settings.slack_api_url)
        bot = build_bot(services, client=client, signing_secret=secret)
        yield SandboxBot(
            settings=settings,
            services=services,
            bot=bot,
            http_app=create_http_app(
                bot,
                signing_secret=secret,
                services=services,
                serve_metrics=settings.metrics_port is None,
            ),
        )


def open_sandbox(
    options: SandboxOptions,
) -> contextlib.AbstractAsyncContextManager[RunningSandbox[SandboxBot]]:
    """:func:`sandbox.server.open_sandbox` with the production bot."""
    return server.open_sandbox(options, bots=open_sandbox_bot)


async def check_recording(path: Path, **options: Any) -> tuple[str, int]:
    """:func:`sandbox.server.check_recording` with the production bot."""
    return await server.check_recording(path, bots=open_sandbox_bot, **options)


def run_sandbox(
    options: SandboxOptions,
    *,
    echo: Callable[[str], None] = print,
    replay: Path | None = None,
) -> None:
    """:func:`sandbox.server.run_sandbox` with the production bot."""
    server.run_sandbox(options, bots=open_sandbox_bot, echo=echo, replay=replay)
