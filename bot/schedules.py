"""The Slack side of schedules: posting for the scheduler, ``/switchboard schedule(s)``,
the buttons, the create modal, the App Home section, and stand-up replies in DMs.

Wiring (done by the composition root, :mod:`switchboard.scheduling`)::

    scheduler = build_scheduler(services, client=bot.client)
    feature = install(bot, scheduler, audit=..., admin_usergroup=...)
    async with scheduler: ...

``install`` only uses the extension points of :class:`~bot.listeners.BotContext`
(``subcommands``, ``help_lines``, ``home_sections``) and Bolt's action/view registration.

Authorization (docs/security.md): a schedule acts as its owner, so creating one for a
channel needs the creator to be a member of it (and of any channel its input names, such
as a digest's), asked of Slack at that moment; Pause, Resume, Run now and Delete are for
the owner or a member of ``SWITCHBOARD_ADMIN_USERGROUP`` (asked afresh at each click);
refusals are audited. The scheduler checks the owner again whenever a schedule fires.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncAck, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block, SectionBlock
from slack_sdk.web.async_client import AsyncWebClient

from bot.access import SlackConversationAccess
from bot.app import Bot
from bot.delivery import (
    FIRST_MESSAGE,
    Deliveries,
    PostInDoubt,
    SlackCall,
    Undelivered,
    error_code,
    post_once,
    send,
)
from bot.home import publish_home
from bot.slack.reader import WebApiSlackReader
from bot.views import blocks as views
from bot.views import schedules as sviews
from bot.views.text import LinkPolicy, escape_mrkdwn
from scheduler.errors import InvalidSchedule, NotAllowed, SchedulerError
from scheduler.manage import STANDUP, ScheduleManager, StandupOptions, parse_one_line
from scheduler.ports import DropNotice, PostDeferred, Posted, PostFailed
from scheduler.service import SchedulerService
from skills.access import decide
from skills.context import Principal, SlackReaderError
from storage.audit import AuditLog
from storage.errors import StorageError

log = logging.getLogger(f"switchboard.{__name__}")

__all__ = ["SchedulesFeature", "SlackPoster", "install"]


class SlackPoster:
    """The scheduler's :class:`~scheduler.ports.Poster` over the bot's Web API client.

    Answers are rendered like conversation answers (masked, escaped, split under Slack's
    limit; later chunks go in the first one's thread). An answer Slack keeps refusing with
    ``ratelimited`` goes to ``deliveries`` (bot.delivery) rather than failing the firing:
    the skill has run, and the answer is posted once Slack takes it.
    """

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        links: LinkPolicy | None = None,
        deliveries: Deliveries | None = None,
    ) -> None:
        self._client = client
        self._links = links or LinkPolicy()
        self._deliveries = deliveries

    async def answer(
        self,
        channel: str,
        text: str,
        *,
        skill: str,
        run_id: str | None,
        dropped: DropNotice | None = None,
    ) -> Posted:
        chunks = views.answer_chunks(text, links=self._links)
        calls = [
            SlackCall(
                "chat.postMessage",
                _post_args(
                    channel,
                    text=chunk,
                    blocks=[
                        b.to_dict()
                        for b in views.answer_blocks(
                            chunk, run_id=run_id, skill=skill, last=index == len(chunks) - 1
                        )
                    ],
                    thread_ts=FIRST_MESSAGE if index else None,
                ),
            )
            for index, chunk in enumerate(chunks)
        ]
        return await self._send(channel, calls, defer=True, dropped=dropped)

    async def _send(
        self,
        channel: str,
        calls: list[SlackCall],
        *,
        defer: bool,
        dropped: DropNotice | None = None,
    ) -> Posted:
        """Make ``calls``; with ``defer``, what Slack keeps refusing goes to ``deliveries``
        (and ``dropped`` is sent if it can't be posted after all)."""
        try:
            if defer:
                first = await send(self._client, calls)
            else:  # its ts is needed now: a post whose answer was lost is looked for at once
                [call] = calls
                first = await post_once(self._client, call.args)
        except Undelivered as exc:
            if not defer:
                raise PostFailed(exc.reason) from exc
            return await self._later(channel, exc, dropped)
        except SlackApiError as exc:
            raise PostFailed(error_code(exc)) from exc
        except (PostInDoubt, aiohttp.ClientError, OSError) as exc:
            raise PostFailed(type(exc).__name__) from exc
        assert first is not None
        return Posted(channel=str(first.get("channel") or channel), ts=str(first["ts"]))

    async def _later(
        self, channel: str, undelivered: Undelivered, dropped: DropNotice | None
    ) -> Posted:
        if self._deliveries is None:
            raise PostFailed(undelivered.reason)
        try:
            await self._deliveries.later(
                undelivered,
                thread=f"channel:{channel}",
                channel=channel,
                placeholder_ts=None,
                tell=(dropped.to, dropped.text) if dropped is not None else None,
            )
        except StorageError as exc:
            log.warning("answer to %s not queued (%s)", channel, exc)
            raise PostFailed(undelivered.reason) from exc
        if undelivered.made:  # the first is posted: the rest follow in its thread
            return Posted(channel=channel, ts=str(undelivered.calls[0].args["thread_ts"]))
        raise PostDeferred(undelivered.wait, reason=undelivered.reason)

    async def notice(self, channel: str, text: str, *, later: bool = False) -> Posted:
        blocks = [SectionBlock(text=views._mrkdwn(text[:3000])).to_dict()]
        call = SlackCall("chat.postMessage", _post_args(channel, text=text, blocks=blocks))
        return await self._send(channel, [call], defer=later)


def _post_args(
    channel: str, *, text: str, blocks: list[dict[str, Any]], thread_ts: str | None = None
) -> dict[str, Any]:
    return {
        "channel": channel,
        "text": text,
        "blocks": blocks,
        "thread_ts": thread_ts,
        "unfurl_links": False,
        "unfurl_media": False,
    }


@dataclass(slots=True)
class SchedulesFeature:
    """What :func:`install` wired; ``capture_standup_reply`` is for the bot's DM path."""

    scheduler: SchedulerService

    async def capture_standup_reply(
        self, team: str, channel: str, user: str, text: str, ts: str
    ) -> bool:
        """True when a DM was a stand-up answer (then it must not get a normal answer)."""
        try:
            return await self.scheduler.collector.capture(
                team=team, channel=channel, user=user, text=text, ts=ts
            )
        except Exception:  # never lose the message: fall back to the normal answer path
            log.exception("stand-up reply capture failed")
            return False


_CREATE_REFUSALS = {
    "not_member": (
        "You're not a member of {0}, and a schedule acts as you, so it can't post in or "
        "read that channel."
    ),
    "not_your_dm": "{0} is someone else's DM; a schedule can't post in or read it.",
    "unknown": "I couldn't find {0}, or it isn't a conversation you can use.",
    "unverified": "I can't check who is in {0} right now; try again.",
}


def _plain(text: str) -> str:
    """A message for a modal's error line (plain text: Slack shows markup there raw)."""
    text = re.sub(
        r"<#[CGD][A-Z0-9]+(?:\|([^>]*))?>",
        lambda m: f"#{m.group(1)}" if m.group(1) else "that channel",
        text,
    )
    text = re.sub(r"<@[UW][A-Z0-9]+(?:\|([^>]*))?>", lambda m: m.group(1) or "that person", text)
    return text.replace("`", "")[:2000]


def _user_error(exc: Exception) -> str:
    if isinstance(exc, SchedulerError):
        return str(exc)
    log.exception("schedule command failed")
    return "Sorry, something went wrong on my side saving that schedule."


def install(
    bot: Bot, scheduler: SchedulerService, *, audit: AuditLog, admin_usergroup: str | None
) -> SchedulesFeature:
    """Register ``/switchboard schedule`` and ``schedules``, buttons, modal and App Home.

    Refused creations go to ``audit``; ``admin_usergroup`` (SWITCHBOARD_ADMIN_USERGROUP)
    may change everyone's schedules."""
    context = bot.context
    manager: ScheduleManager = scheduler.manager
    runtime = context.conversations.runtime
    directory = context.conversations.directory
    reader = WebApiSlackReader(client=bot.client)
    # Creating a schedule is an authorization decision: memberships asked of Slack anew.
    access = SlackConversationAccess(client=bot.client, ttl=0.0)
    admin_group = admin_usergroup
    feature = SchedulesFeature(scheduler=scheduler)

    def skill_names(actor: Principal, channel: str | None) -> list[str]:
        return [s.name for s in runtime.available_skills(actor, channel)]

    async def refuse(user: str, summary: str) -> None:
        try:
            await audit.append("refused-schedule", actor=user, summary=summary[:500])
        except Exception:  # the refusal stands even when the audit log is unreachable
            log.exception("schedule refusal not audited")

    async def may_schedule(
        actor: Principal, *, skill: str, target: str, text: str, current: str | None
    ) -> None:
        """Raise :class:`InvalidSchedule` unless ``actor`` may have ``skill`` post in
        ``target`` (and read what ``text`` names) for them, every time it fires."""
        if actor.is_guest or actor.is_external:
            await refuse(actor.user_id, f"create {skill} in {target}: guest or external")
            raise InvalidSchedule("Schedules can only be created by members of this workspace.")
        wanted = [target]
        if skill != STANDUP and skill in runtime.registry:
            reads = runtime.registry.get(skill).reads
            wanted += [c for c in (reads(text) if reads else ()) if c != target]
        for conversation in wanted:
            try:
                verdict = await decide(
                    actor,
                    conversation,
                    current=current if conversation == target else None,
                    access=access,
                )
            except SlackReaderError as exc:
                raise InvalidSchedule(
                    f"I couldn't check <#{conversation}> with Slack ({exc.error}); try again."
                ) from exc
            if verdict.refusal is not None:
                await refuse(
                    actor.user_id,
                    f"create {skill} in {target}: {conversation} ({verdict.refusal})",
                )
                raise InvalidSchedule(
                    _CREATE_REFUSALS[verdict.refusal].format(f"<#{conversation}>")
                )

    async def list_blocks(channel: str, note: str | None = None) -> tuple[str, list[Block]]:
        rows = await manager.for_channel(channel)
        blocks = sviews.channel_list_blocks(
            rows, channel=channel, summary=manager.summary, note=note
        )
        return sviews.channel_list_text(rows, channel=channel, summary=manager.summary), blocks

    async def resolve_channel(token: str | None, current: str) -> str:
        if token is None:
            return current
        if not token.startswith("#"):
            return token
        try:
            name = await reader.channel_name(current)
        except SlackReaderError:
            name = None
        if name is not None and f"#{name}" == token:
            return current
        raise SchedulerError(
            f"I can't look up {token} by name. Type # and pick the channel from the list, "
            "or run the command in that channel."
        )

    async def create_from_line(*, text: str, team: str, user: str, channel: str) -> str:
        line = parse_one_line(text)
        actor = await directory.actor(user)
        target = await resolve_channel(line.channel, channel)
        if line.skill != STANDUP and line.skill not in skill_names(actor, target):
            raise SchedulerError(f"You can't use `{line.skill}` in <#{target}>.")
        await may_schedule(
            actor, skill=line.skill, target=target, text=line.text, current=channel or None
        )
        standup = None
        if line.skill == STANDUP:
            assert line.usergroup is not None
            standup = StandupOptions(
                usergroup=line.usergroup,
                prompt=line.text or StandupOptions(usergroup=line.usergroup).prompt,
            )
            if line.window is not None:
                standup = StandupOptions(
                    usergroup=line.usergroup, window=line.window, prompt=standup.prompt
                )
        created = await manager.create(
            team=team,
            owner=user,
            channel=target,
            skill=line.skill,
            when=line.when,
            tz=line.tz or actor.tz,
            text="" if standup else line.text,
            standup=standup,
        )
        return sviews.created_text(line.skill, target, created.echo, created.schedule.id)

    async def schedule(
        body: dict[str, Any],
        ack: AsyncAck,
        respond: AsyncRespond,
        client: AsyncWebClient,
        args: str,
    ) -> None:
        user, channel = str(body.get("user_id", "")), str(body.get("channel_id", ""))
        team = str(body.get("team_id") or "T0")
        if not args:
            await ack()
            actor = await directory.actor(user)
            try:
                await client.views_open(
                    trigger_id=str(body.get("trigger_id", "")),
                    view=sviews.schedule_modal(
                        skills=skill_names(actor, channel),
                        channel=channel or None,
                        tz=actor.tz,
                        metadata=f"{team}|{channel}",
                    ),
                )
            except SlackApiError as exc:
                log.warning("schedule modal not opened: %s", exc.response.get("error"))
            return
        try:
            text = await create_from_line(text=args, team=team, user=user, channel=channel)
        except Exception as exc:
            await ack(response_type="ephemeral", text=_user_error(exc))
            return
        await ack(response_type="ephemeral", text=text)

    async def schedules(
        body: dict[str, Any],
        ack: AsyncAck,
        respond: AsyncRespond,
        client: AsyncWebClient,
        args: str,
    ) -> None:
        text, blocks = await list_blocks(str(body.get("channel_id", "")))
        await ack(response_type="ephemeral", text=text, blocks=blocks)

    context.subcommands["schedule"] = schedule
    context.subcommands["schedules"] = schedules
    context.help_lines.extend(sviews.HELP_LINES)

    async def home(actor: Principal) -> list[Block]:
        rows = await manager.for_owner(actor.user_id)
        return sviews.home_blocks(rows, summary=manager.summary)

    context.home_sections.append(home)

    async def on_button(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        action = (body.get("actions") or [{}])[0]
        action_id, schedule_id = str(action.get("action_id", "")), str(action.get("value", ""))
        user = str((body.get("user") or {}).get("id", ""))
        try:
            # The owner, or an admin (asked of Slack now, not from a cache).
            found = await manager.get(schedule_id)
            admin = found.owner != user and await directory.in_group(user, admin_group)
            if action_id == sviews.PAUSE:
                row = await manager.pause(schedule_id, by=user, admin=admin)
                note = f"Paused `{row.id[:8]}`."
            elif action_id == sviews.RESUME:
                row = await manager.resume(schedule_id, by=user, admin=admin)
                note = f"Resumed `{row.id[:8]}`."
            elif action_id == sviews.DELETE:
                row = await manager.delete(schedule_id, by=user, admin=admin)
                note = f"Deleted `{row.id[:8]}`."
            else:
                row = await manager.run_now(schedule_id, by=user, admin=admin)
                note = f"Running `{row.id[:8]}` now; the result goes to <#{row.channel_id}>."
        except NotAllowed as exc:
            row = None
            note = f"Only the schedule's owner or an admin can {exc.action} it."
            await refuse(user, f"{exc.action} schedule {schedule_id[:32]}: not the owner")
        except Exception as exc:
            row = None
            note = escape_mrkdwn(_user_error(exc))
        view = body.get("view") or {}
        try:
            if view.get("type") == "home":
                await publish_home(context, client, user)
                return
            channel = (
                row.channel_id
                if row is not None
                else str((body.get("channel") or {}).get("id", ""))
            )
            # The note is ours (channel mentions and ids we built); error texts in it were
            # escaped where they were made, so it is not escaped again here.
            text, blocks = await list_blocks(channel, note=note)
            await respond(
                replace_original=True, response_type="ephemeral", text=text, blocks=blocks
            )
        except Exception:  # the change is made; only the refresh failed
            log.warning("schedule list refresh failed", exc_info=True)

    for action_id in sviews.ACTIONS:
        bot.app.action(action_id)(on_button)

    async def on_submit(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        values = (view.get("state") or {}).get("values") or {}

        def value(block: str, key: str = "value") -> str:
            field = (values.get(block) or {}).get(block) or {}
            if key == "selected_option":
                return str((field.get("selected_option") or {}).get("value") or "")
            return str(field.get(key) or "")

        user = str((body.get("user") or {}).get("id", ""))
        team_id, _, origin = str(view.get("private_metadata", "")).partition("|")
        skill = value(sviews.SKILL, "selected_option")
        channel = value(sviews.CHANNEL, "selected_conversation")
        actor = await directory.actor(user)
        # Each problem under the field it is about; modal errors are plain text.
        missing = {
            block: text
            for block, text in (
                (sviews.SKILL, "Choose a skill."),
                (sviews.CHANNEL, "Choose where the results go."),
            )
            if not (skill if block == sviews.SKILL else channel)
        }
        if not value(sviews.WHEN).strip():
            missing[sviews.WHEN] = "Say when, e.g. every weekday at 9:00."
        if missing:
            await ack(response_action="errors", errors=missing)
            return
        if skill not in skill_names(actor, channel):
            await ack(
                response_action="errors",
                errors={sviews.SKILL: f"You can't use {skill} in that channel."},
            )
            return
        try:
            await may_schedule(
                actor, skill=skill, target=channel, text=value(sviews.INPUT), current=origin or None
            )
        except InvalidSchedule as exc:
            block = sviews.CHANNEL if f"<#{channel}>" in str(exc) else sviews.INPUT
            await ack(response_action="errors", errors={block: _plain(str(exc))})
            return
        try:
            created = await manager.create(
                team=team_id or "T0",
                owner=user,
                channel=channel,
                skill=skill,
                when=value(sviews.WHEN),
                tz=value(sviews.TZ).strip() or actor.tz,
                text=value(sviews.INPUT),
            )
        except SchedulerError as exc:
            problem = str(exc).lower()
            block = (
                sviews.TZ
                if "time zone" in problem or "timezone" in problem
                else sviews.CHANNEL
                if "channel" in problem
                else sviews.WHEN
            )
            await ack(response_action="errors", errors={block: _plain(str(exc))})
            return
        await ack()
        text = sviews.created_text(skill, channel, created.echo, created.schedule.id)
        try:
            await client.chat_postEphemeral(channel=channel, user=user, text=text)
        except SlackApiError:
            try:
                await client.chat_postMessage(channel=user, text=text)
            except SlackApiError as exc:
                log.warning("schedule confirmation not delivered: %s", exc.response.get("error"))

    bot.app.view(sviews.SCHEDULE_MODAL)(on_submit)

    hooks = getattr(context, "dm_hooks", None)
    if isinstance(hooks, list):
        hooks.append(feature.capture_standup_reply)
    return feature
