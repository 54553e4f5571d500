"""Slack listeners, grouped by kind; each group has a ``register(app, bot)``."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.listeners import actions, commands, events, hygiene
from bot.listeners._context import BotContext

__all__ = ["BotContext", "register"]


def register(app: AsyncApp, bot: BotContext) -> None:
    hygiene.register(app, bot)
    events.register(app, bot)
    commands.register(app, bot)
    actions.register(app, bot)
