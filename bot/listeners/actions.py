"""Interactivity: 👍/👎 feedback buttons under answers and the optional comment modal."""

from __future__ import annotations

import logging
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.listeners._context import BotContext
from bot.views import blocks as views
from skills.context import ThreadRef
from skills.pii import mask_text, strip_token_ids
from skills.sampling import SampledTurn

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


def _clean(text: str) -> str:
    return mask_text(strip_token_ids(text)).strip()


def _answered(messages: list[BaseMessage], shown: str) -> tuple[str, str] | None:
    """The (request, answer) pair of memory whose answer is the message clicked (``shown``,
    its Slack text), else the latest pair; masked."""
    pairs: list[tuple[str, str]] = []
    asked: str | None = None
    for message in messages:
        if isinstance(message, HumanMessage):
            asked = _clean(str(message.text))
        elif isinstance(message, AIMessage) and not message.tool_calls and asked is not None:
            text = _clean(str(message.text))
            if text:
                pairs.append((asked, text))
    if not pairs:
        return None
    head = " ".join(_clean(shown).split())[:80]
    for request, answer in reversed(pairs):
        if head and " ".join(answer.split()).startswith(head):
            return request, answer
    return pairs[-1]


async def _sample_thumbs_down(
    bot: BotContext, thread: ThreadRef, *, run_id: str, skill: str, shown: str
) -> None:
    """A 👎 answer is always scored online (after the ack: a background task)."""
    runtime = bot.conversations.runtime
    if runtime.sampler is None:
        return
    try:
        messages = await runtime.history(thread)
    except Exception:  # sampled from what Slack showed when memory cannot be read
        log.warning("feedback: the thread's memory could not be read", exc_info=True)
        messages = []
    pair = _answered(messages, shown)
    request, answer = pair if pair is not None else ("", _clean(shown))
    await runtime.sampler.thumbs_down(
        SampledTurn(run_id=run_id, skill=skill, request=request[:4000], answer=answer)
    )


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
        if value == "down":
            bot.worker.spawn(
                _sample_thumbs_down(
                    bot, thread, run_id=run_id, skill=skill, shown=str(message.get("text") or "")
                ),
                name=f"sample-down-{run_id}",
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
