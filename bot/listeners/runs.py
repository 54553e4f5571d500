"""The Stop button on a queued turn's placeholder: cancels the run (its model call too).

The requester, or anyone who has posted in the thread, may stop it; anyone else gets a
short note only they see. After a stop the conversation has no dangling tool calls
(``Runtime.settle_cancelled``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.listeners._context import BotContext
from bot.views import runs as run_views
from storage.runqueue import InboxItem, InboxStore, QueueError, RunQueue

log = logging.getLogger(f"switchboard.{__name__}")

NOT_YOURS = "Only the person who asked, or someone taking part in this thread, can stop this."
ALREADY_DONE = "That answer has already finished."


def register(app: AsyncApp, bot: BotContext, *, queue: RunQueue, inbox: InboxStore) -> None:
    @app.action(run_views.STOP_ACTION)
    async def on_stop(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        action = (body.get("actions") or [{}])[0]
        user = str((body.get("user") or {}).get("id", ""))
        channel = str((body.get("channel") or {}).get("id", ""))
        try:
            job_id = int(str(action.get("value", "")))
        except ValueError:
            log.warning("stop click without a job id; ignored")
            return
        items = await inbox.by_job(job_id)
        if not items:
            await _tell(client, channel, user, ALREADY_DONE)
            return
        if not await may_stop(client, user, items):
            log.info("stop refused", extra={"job_id": job_id, "user": user})
            await _tell(client, channel, user, NOT_YOURS)
            return
        if all(item.status == "done" for item in items):
            await _tell(client, channel, user, ALREADY_DONE)
            return
        bot.conversations.stop_requests[job_id] = user
        try:
            cancelled = await queue.cancel(job_id)
        except QueueError as exc:
            log.warning("stop of job %s failed: %s", job_id, exc)
            cancelled = False
        log.info("stop requested", extra={"job_id": job_id, "user": user, "ok": cancelled})
        if not cancelled:
            bot.conversations.stop_requests.pop(job_id, None)
            await _tell(client, channel, user, ALREADY_DONE)
            return
        job = await queue.job(job_id)
        if job is not None and job.status == "cancelled":  # it was waiting for a retry
            bot.conversations.stop_requests.pop(job_id, None)
            for item in items:
                if item.status != "done" and item.placeholder_ts:
                    await _update(client, channel, item.placeholder_ts, user)
            await inbox.finish([i.id for i in items if i.status != "done"], "stopped")


async def may_stop(client: AsyncWebClient, user: str, items: Sequence[InboxItem]) -> bool:
    """Who may stop a turn: whoever asked, or a participant of its Slack thread — someone
    who has posted in that thread (read now from Slack, so it cannot be claimed). A DM
    or a top-level conversation has no participants beyond the requester."""
    if not user:
        return False
    if user in {item.user_id for item in items}:
        return True
    head = items[0].payload
    channel, thread_ts = str(head.get("channel", "")), head.get("reply_thread_ts")
    if not channel or not thread_ts:
        return False
    try:
        response = await client.conversations_replies(channel=channel, ts=str(thread_ts), limit=200)
    except SlackApiError as exc:  # cannot tell: refuse (the requester can still stop it)
        log.info("thread participants unknown: %s", exc.response.get("error"))
        return False
    messages = response.get("messages") or []
    return any(message.get("user") == user for message in messages)


async def _update(client: AsyncWebClient, channel: str, ts: str, user: str) -> None:
    try:
        await client.chat_update(
            channel=channel, ts=ts, text=run_views.stopped_text(user), blocks=[]
        )
    except Exception as exc:  # cosmetic; the rows are closed either way
        log.info("stopped placeholder not updated: %s", exc)


async def _tell(client: AsyncWebClient, channel: str, user: str, text: str) -> None:
    if channel and user:
        try:
            await client.chat_postEphemeral(channel=channel, user=user, text=text)
        except Exception as exc:  # a courtesy note; the click itself was handled
            log.info("stop note not sent: %s", exc)
