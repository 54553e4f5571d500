"""The Stop button on a queued turn's placeholder: cancels the run (its model call too)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.listeners._context import BotContext
from bot.views import runs as run_views
from storage.runqueue import InboxStore, QueueError, RunQueue

log = logging.getLogger(f"switchboard.{__name__}")

NOT_YOURS = "Only the person who asked can stop this answer."
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
        requesters = {item.user_id for item in items}
        if not items or user not in requesters:
            await _tell(client, channel, user, NOT_YOURS if items else ALREADY_DONE)
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
