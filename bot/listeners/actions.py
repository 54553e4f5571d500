"""Interactivity: 👍/👎 feedback buttons under answers and the optional comment modal."""

from __future__ import annotations

import logging
from typing import Any

from langchain_core.messages import HumanMessage
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.listeners._context import BotContext
from bot.views import blocks as views
from skills.context import ThreadRef
from skills.pii import mask_text, strip_token_ids

log = logging.getLogger(f"switchboard.{__name__}")


async def _request(bot: BotContext, thread: ThreadRef) -> str | None:
    """The thread's latest request as memory holds it, masked: stored with the feedback so
    a 👎 still says what was asked after the conversation's memory expires."""
    try:
        messages = await bot.conversations.runtime.history(thread)
    except Exception:  # feedback is recorded even when memory cannot be read
        log.warning("feedback: the thread's memory could not be read", exc_info=True)
        return None
    asked = [m for m in messages if isinstance(m, HumanMessage)]
    if not asked:
        return None
    return mask_text(strip_token_ids(str(asked[-1].text))).strip()[:4000] or None


def register(app: AsyncApp, bot: BotContext) -> None:
    async def feedback(
        value: str, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        action = (body.get("actions") or [{}])[0]
        run_id, _, skill = str(action.get("value", "")).partition("|")
        message = body.get("message") or {}
        channel = str((body.get("channel") or {}).get("id", ""))
        user = str((body.get("user") or {}).get("id", ""))
        message_ts = str(message.get("ts", ""))
        if not (run_id and skill and channel and user and message_ts):
            log.warning("feedback click without run, channel, user or message; ignored")
            return
        thread_ts = str(message.get("thread_ts") or message_ts)
        team = str((body.get("team") or {}).get("id") or "T0")
        thread = ThreadRef(team=team, channel=channel, thread_ts=thread_ts)
        await bot.feedback.record(
            skill=skill,
            thread_id=thread.thread_id,
            request=await _request(bot, thread),
            channel_id=channel,
            message_ts=message_ts,
            user_id=user,
            value=value,
            run_id=run_id,
        )
        try:
            # Feedback is per person: the buttons stay for everyone else, and only the
            # person who clicked is told it was recorded.
            await client.chat_postEphemeral(
                channel=channel,
                user=user,
                thread_ts=str(message["thread_ts"]) if message.get("thread_ts") else None,
                text=views.feedback_thanks(value),
            )
            if value == "down" and body.get("trigger_id"):
                await client.views_open(
                    trigger_id=str(body["trigger_id"]),
                    view=views.feedback_modal(
                        run_id=run_id, skill=skill, channel=channel, message_ts=message_ts
                    ),
                )
        except SlackApiError as exc:
            log.warning("feedback display failed: %s", exc.response.get("error"))

    @app.action(views.FEEDBACK_UP)
    async def on_up(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await feedback("up", ack, body, client)

    @app.action(views.FEEDBACK_DOWN)
    async def on_down(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await feedback("down", ack, body, client)

    @app.view(views.FEEDBACK_MODAL)
    async def on_comment(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        await ack()
        parts = str(view.get("private_metadata", "")).split("|")
        if len(parts) != 4:
            log.warning("feedback modal without metadata; ignored")
            return
        _run_id, _skill, channel, message_ts = parts
        values = (view.get("state") or {}).get("values") or {}
        comment = str(((values.get("comment") or {}).get("text") or {}).get("value") or "")
        user = str((body.get("user") or {}).get("id", ""))
        if comment.strip():
            await bot.feedback.comment(
                channel_id=channel,
                message_ts=message_ts,
                user_id=user,
                comment=mask_text(comment.strip()),
            )
