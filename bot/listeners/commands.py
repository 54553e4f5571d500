"""``/switchboard``: help, skills, reset, ``<skill> <text>``, and what later features add.

The command is acked at once (well under a second) with an ephemeral answer; skill output
goes to the channel as a message whose thread carries the conversation on.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversations import Inbound, user_error
from bot.listeners._context import BotContext
from bot.listeners.events import plain_text
from bot.views import blocks as views
from bot.views.text import escape_mrkdwn
from skills.context import ThreadRef

log = logging.getLogger(__name__)


def usage(bot: BotContext) -> str:
    """The help text, with the lines that features added."""
    return "\n".join([views.USAGE, *bot.help_lines])


def register(app: AsyncApp, bot: BotContext) -> None:
    runtime = bot.conversations.runtime

    @app.command(views.COMMAND)
    async def switchboard(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        text = plain_text(str(body.get("text") or "").strip())
        word, _, rest = text.partition(" ")
        word = word.lower()
        rest = rest.strip()
        user, channel = str(body.get("user_id", "")), str(body.get("channel_id", ""))
        team = str(body.get("team_id") or "T0")

        if word in {"", "help"}:
            await ack(response_type="ephemeral", text=usage(bot))
            return
        if word == "skills":
            actor = await bot.conversations.directory.actor(user)
            await ack(
                response_type="ephemeral",
                text=views.skills_text(runtime.available_skills(actor, channel)),
            )
            return
        if word == "reset":
            memory = ThreadRef(team=team, channel=channel, thread_ts=None)
            try:
                refusal = await bot.conversations.reset(memory, user)
            except Exception as exc:
                message, ref = user_error(exc)
                log.warning("reset failed ref=%s: %s", ref, exc)
                await ack(response_type="ephemeral", text=message)
                return
            await ack(
                response_type="ephemeral",
                text=refusal or "Forgotten. To reset a thread, mention me in it with `reset`.",
            )
            return
        extra = bot.subcommands.get(word)
        if extra is not None:
            await extra(body, ack, respond, client, rest)
            return
        if word in runtime.registry:
            actor = await bot.conversations.directory.actor(user)
            if word not in {s.name for s in runtime.available_skills(actor, channel)}:
                names = ", ".join(f"`{s.name}`" for s in runtime.available_skills(actor, channel))
                await ack(
                    response_type="ephemeral",
                    text=f"You can't use `{word}` here. You can use: {names or 'none'}.",
                )
                return
            await ack(response_type="ephemeral", text=f"Running `{word}`…")
            bot.worker.spawn(
                _run_skill(
                    bot,
                    client,
                    respond,
                    team=team,
                    channel=channel,
                    user=user,
                    skill=word,
                    text=rest or word,
                ),
                name=f"command:{word}",
            )
            return
        await ack(
            response_type="ephemeral",
            text=f"I don't know `{escape_mrkdwn(word)}`.\n\n{usage(bot)}",
        )


async def _run_skill(
    bot: BotContext,
    client: AsyncWebClient,
    respond: AsyncRespond,
    *,
    team: str,
    channel: str,
    user: str,
    skill: str,
    text: str,
) -> None:
    """Post a placeholder in the channel, run the skill in its thread, replace it."""
    shown = escape_mrkdwn(text if text != skill else "")
    try:
        placeholder = await client.chat_postMessage(
            channel=channel,
            text=f"<@{user}> asked *{skill}* {shown} — working on it…",
        )
    except SlackApiError as exc:
        error = exc.response.get("error")
        log.info("cannot post in %s (%s); answering through response_url", channel, error)
        await respond(
            response_type="ephemeral",
            text=(
                "I can't post in this conversation. Invite me to the channel "
                "(`/invite @Switchboard`) or DM me."
            ),
        )
        return
    ts = str(placeholder["ts"])
    await bot.conversations.answer(
        Inbound(
            team=team,
            channel=channel,
            user=user,
            text=text,
            kind="command",
            memory=ThreadRef(team=team, channel=channel, thread_ts=ts),
            reply_thread_ts=ts,
            skill=skill,
            placeholder_ts=ts,
        )
    )
