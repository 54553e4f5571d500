"""Event listeners: mentions, DMs and thread follow-ups, the Assistant panel, App Home, and
the membership changes that invalidate who-may-read-what (``bot/access.py``)."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversations import Inbound, InboundKind, user_error
from bot.home import publish_home
from bot.listeners._context import BotContext
from bot.views import blocks as views
from skills.context import ThreadRef
from skills.pii import mask_text
from storage.errors import StorageError

log = logging.getLogger(f"switchboard.{__name__}")

# Subtypes that are not someone talking to us (edits, deletions, joins, bots, files shared
# by integrations…). Plain messages have no subtype; file_share and thread_broadcast are
# still a person writing.
_ANSWERABLE_SUBTYPES = {None, "file_share", "thread_broadcast"}
_RESET = re.compile(r"^\s*(reset|forget( this)?|start over)\s*[.!]?\s*$", re.IGNORECASE)
_HELP = re.compile(views.HELP_TRIGGER, re.IGNORECASE)


def plain_text(text: str) -> str:
    """Slack escapes ``&``, ``<`` and ``>`` in message text; the model gets them back as
    typed (otherwise answers come out double-escaped). Mentions and links stay as Slack
    wrote them (``<@U…>``, ``<https://…|label>``)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def strip_mention(text: str, bot_user_id: str | None) -> str:
    if bot_user_id:
        text = text.replace(f"<@{bot_user_id}>", " ")
    return plain_text(re.sub(r"[ \t]+", " ", text).strip())


def _team(body: dict[str, Any], event: dict[str, Any]) -> str:
    team = event.get("team") if isinstance(event.get("team"), str) else None
    return str(team or body.get("team_id") or "T0")


def _field(event: dict[str, Any], name: str) -> str | None:
    """A string field of the event, or None when it is missing, empty or not a string."""
    value = event.get(name)
    return value if isinstance(value, str) and value else None


def _from_person(event: dict[str, Any], bot_user_id: str | None) -> bool:
    subtype = event.get("subtype")
    if event.get("bot_id") or not (subtype is None or isinstance(subtype, str)):
        return False
    if subtype not in _ANSWERABLE_SUBTYPES:
        return False
    user = _field(event, "user")
    return user is not None and user != bot_user_id


def _malformed(event: dict[str, Any], *missing: str) -> bool:
    """Log and say so when the event lacks one of ``missing`` (it is acked and dropped)."""
    absent = [name for name in missing if _field(event, name) is None]
    if absent:
        log.warning("%s event without %s; ignored", str(event.get("type"))[:40], ", ".join(absent))
    return bool(absent)


def register(app: AsyncApp, bot: BotContext) -> None:
    conversations = bot.conversations

    async def help_reply(inbound: Inbound) -> None:
        """The real help: this person's skills here, with examples that work here."""
        runtime = conversations.runtime
        actor = await conversations.directory.actor(inbound.user)
        skills = runtime.available_skills(actor, inbound.channel)
        offline = runtime.offline_note()
        await conversations.client.chat_postMessage(
            channel=inbound.channel,
            thread_ts=inbound.reply_thread_ts,
            text=views.help_text(
                skills,
                examples={skill.name: runtime.examples(skill) for skill in skills},
                offline_note=offline,
                in_dm=inbound.kind in {"dm", "assistant"},
            ),
            unfurl_links=False,
            unfurl_media=False,
        )

    async def start(inbound: Inbound, body: dict[str, Any] | None = None) -> None:
        """Answer ``inbound``; if it cannot even be stored, give back the dedupe claims and
        raise, so the request gets a non-2xx and Slack's redelivery is handled afresh."""
        try:
            await _start(inbound)
        except Exception:
            await _forget(bot, inbound, body)
            raise

    async def _start(inbound: Inbound) -> None:
        if _HELP.match(inbound.text):
            await help_reply(inbound)
            return
        if _RESET.match(inbound.text):
            try:
                refusal = await conversations.reset(inbound.memory, inbound.user)
            except Exception as exc:
                text, ref = user_error(exc)
                log.warning("reset failed ref=%s: %s", ref, exc)
                await conversations.ephemeral(inbound, text)
                return
            if refusal is not None:  # only the person who asked sees why
                await conversations.ephemeral(inbound, refusal)
                return
            await conversations.client.chat_postMessage(
                channel=inbound.channel,
                thread_ts=inbound.reply_thread_ts,
                text="Forgotten. This conversation starts over.",
            )
            return
        await conversations.submit(inbound)  # rate limits and worker capacity, then answer

    @app.event("app_mention")
    async def on_mention(
        body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        if not _from_person(event, context.bot_user_id) or _malformed(event, "channel", "ts"):
            return
        channel, ts = str(event["channel"]), str(event["ts"])
        if not await _first_sight(bot, channel, ts):
            return
        root = _field(event, "thread_ts") or ts
        await start(
            Inbound(
                team=_team(body, event),
                channel=channel,
                user=str(event["user"]),
                text=strip_mention(_field(event, "text") or "", context.bot_user_id),
                kind="mention",
                memory=ThreadRef(team=_team(body, event), channel=channel, thread_ts=root),
                reply_thread_ts=root,
                message_ts=ts,
                source_ts=ts,
            ),
            body,
        )

    @app.event("message")
    async def on_message(
        body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        if not _from_person(event, context.bot_user_id) or _malformed(event, "channel", "ts"):
            return
        channel, ts = str(event["channel"]), str(event["ts"])
        text = _field(event, "text") or ""
        thread_ts = _field(event, "thread_ts")
        team = _team(body, event)
        bot_id = context.bot_user_id
        if event.get("channel_type") == "im":
            memory = ThreadRef(team=team, channel=channel, thread_ts=thread_ts)
            kind: InboundKind = "assistant" if thread_ts else "dm"
            inbound = Inbound(
                team=team,
                channel=channel,
                user=str(event["user"]),
                text=strip_mention(text, bot_id),
                kind=kind,
                memory=memory,
                reply_thread_ts=thread_ts,
                message_ts=None if kind == "assistant" else ts,
                source_ts=ts,
            )
        else:
            # Channel messages: only follow-ups in a thread Switchboard is part of, and not
            # the ones that mention us (the app_mention event answers those).
            if not thread_ts or (bot_id and f"<@{bot_id}>" in text):
                return
            memory = ThreadRef(team=team, channel=channel, thread_ts=str(thread_ts))
            if await conversations.runtime.thread_skill(memory) is None:
                return
            inbound = Inbound(
                team=team,
                channel=channel,
                user=str(event["user"]),
                text=plain_text(text.strip()),
                kind="thread",
                memory=memory,
                reply_thread_ts=str(thread_ts),
                message_ts=ts,
                source_ts=ts,
            )
        if not await _first_sight(bot, channel, ts):
            return
        if inbound.kind == "dm":
            for hook in bot.dm_hooks:  # e.g. a stand-up collecting answers in DMs
                if await hook(team, channel, inbound.user, inbound.text, ts):
                    return
        if inbound.kind == "assistant":
            await _set_title(context.client, channel, str(thread_ts), inbound.text)
        await start(inbound, body)

    @app.event("assistant_thread_started")
    async def on_assistant_started(event: dict[str, Any], client: AsyncWebClient) -> None:
        thread = event.get("assistant_thread")
        if not isinstance(thread, dict):
            thread = {}
        channel, thread_ts, user = (
            _field(thread, "channel_id"),
            _field(thread, "thread_ts"),
            _field(thread, "user_id"),
        )
        if not (channel and thread_ts and user):
            log.warning("assistant_thread_started without channel, thread or user; ignored")
            return
        actor = await conversations.directory.actor(str(user))
        skills = conversations.runtime.available_skills(actor, None)
        examples = {skill.name: conversations.runtime.examples(skill) for skill in skills}
        try:
            await client.chat_postMessage(
                channel=channel,
                thread_ts=thread_ts,
                text=views.assistant_greeting(offline=conversations.runtime.offline_note()),
            )
            await client.assistant_threads_setSuggestedPrompts(
                channel_id=channel,
                thread_ts=thread_ts,
                prompts=views.suggested_prompts(skills, examples=examples),
            )
        except SlackApiError as exc:
            log.warning("assistant greeting failed: %s", exc.response.get("error"))

    @app.event("assistant_thread_context_changed")
    async def on_assistant_context(event: dict[str, Any]) -> None:
        return None  # acked; the context is read from the thread when needed

    # Memberships changed: forget what the access cache knew, so a person who left a
    # channel cannot have it read for them any more (and one who joined can at once).
    @app.event("member_left_channel")
    async def on_member_left(event: dict[str, Any]) -> None:
        if event.get("user"):
            conversations.access.forget_person(str(event["user"]))

    @app.event("member_joined_channel")
    async def on_member_joined(event: dict[str, Any]) -> None:
        if event.get("user"):
            conversations.access.forget_person(str(event["user"]))

    @app.event("channel_left")
    async def on_channel_left(event: dict[str, Any]) -> None:
        if event.get("channel"):
            conversations.access.forget_conversation(str(event["channel"]))

    @app.event("group_left")
    async def on_group_left(event: dict[str, Any]) -> None:
        if event.get("channel"):
            conversations.access.forget_conversation(str(event["channel"]))

    @app.event("app_home_opened")
    async def on_home(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab") not in (None, "home") or _malformed(event, "user"):
            return
        await publish_home(bot, client, str(event["user"]))


async def _forget(bot: BotContext, inbound: Inbound, body: dict[str, Any] | None) -> None:
    """Undo :func:`_first_sight` and the event-id claim for a message not stored."""
    try:
        if inbound.source_ts:
            await bot.locks.unclaim("message", f"{inbound.channel}-{inbound.source_ts}")
        event_id = (body or {}).get("event_id")
        if event_id:
            await bot.locks.unclaim("event", str(event_id))
    except StorageError as exc:  # Redis down too: the claims expire on their own
        log.warning("dedupe claims not released: %s", exc)


async def _first_sight(bot: BotContext, channel: str, ts: str) -> bool:
    """One answer per message, whichever event (mention or message) brought it first."""
    try:
        return await bot.locks.claim("message", f"{channel}-{ts}")
    except Exception:  # Redis blip: answering twice is better than not answering
        log.warning("message dedupe skipped for %s/%s", channel, ts)
        return True


async def _set_title(client: AsyncWebClient, channel: str, thread_ts: str, text: str) -> None:
    try:
        await client.assistant_threads_setTitle(
            channel_id=channel, thread_ts=thread_ts, title=mask_text(text)[:60] or "Conversation"
        )
    except SlackApiError as exc:
        log.info("assistant title skipped: %s", exc.response.get("error"))
