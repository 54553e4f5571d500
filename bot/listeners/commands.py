"""``/switchboard``: help, skills, reset, ``<skill> <text>``, and what later features add.

The command is acked at once (well under a second) with an ephemeral answer; skill output
goes to the channel as a message whose thread carries the conversation on.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversations import BUSY_TEXT, Inbound, rate_limited_text, user_error
from bot.delivery import NOT_POSTED, not_posted_reason, post_once
from bot.listeners._context import BotContext
from bot.listeners.events import plain_text
from bot.views import blocks as views
from bot.views.text import escape_mrkdwn
from bot.views.usage import TOP, USAGE_HELP, UsageArgsError, parse_usage_args, usage_text
from bot.worker import WorkerBusy
from skills.context import ThreadRef
from skills.limits import SkillGate
from storage.runs import RunStore, UsageDimension, UsageRow

log = logging.getLogger(f"switchboard.{__name__}")


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
            refused = runtime.check_access(word, actor, channel)
            if refused is not None:
                names = ", ".join(f"`{name}`" for name in refused.allowed_skills)
                await ack(
                    response_type="ephemeral",
                    text=f"You can't use `{word}` here. You can use: {names or 'none'}.",
                )
                return
            wait = await bot.conversations.rate_wait(team, channel, user)
            if wait:
                await ack(response_type="ephemeral", text=rate_limited_text(wait))
                return
            try:
                bot.worker.admit(
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
            except WorkerBusy:
                bot.metrics.busy.inc()
                await ack(response_type="ephemeral", text=BUSY_TEXT)
                return
            # No "Running…" notice that would outlive the answer: the channel post that
            # says who asked turns into the answer itself.
            await ack()
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
        placeholder = await post_once(  # the answer replaces it: never two
            client,
            {"channel": channel, "text": f"<@{user}> asked *{skill}* {shown} — working on it…"},
        )
    except NOT_POSTED as exc:
        error = not_posted_reason(exc)
        log.info("cannot post in %s (%s); answering through response_url", channel, error)
        await respond(response_type="ephemeral", text=_cannot_post_text(error))
        return
    ts = str(placeholder["ts"])
    await bot.conversations.answer_or_enqueue(
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


#: Slack's refusals that mean the bot may not post in the conversation at all.
_NOT_HERE = frozenset(
    {"not_in_channel", "channel_not_found", "is_archived", "restricted_action", "cannot_dm_bot"}
)


def _cannot_post_text(error: str) -> str:
    if error in _NOT_HERE:
        return (
            "I can't post in this conversation. Invite me to the channel "
            "(`/invite @Switchboard`) or DM me."
        )
    return "Slack didn't take my message just now, so I couldn't start on that. Try again."


# -------------------------------------------------------------------------- admin

ADMIN_USAGE = (
    "`/switchboard admin status` — skills switched off, and daily budgets\n"
    "`/switchboard admin disable SKILL [reason]` — switch a skill off for everyone\n"
    "`/switchboard admin enable SKILL` — switch it back on\n" + USAGE_HELP
)


def register_admin(
    bot: BotContext,
    gate: SkillGate,
    *,
    admin_usergroup: str | None,
    runs: RunStore | None = None,
) -> None:
    """``/switchboard admin …``: the skills kill switch and, with ``runs``, the usage
    report, for members of the admin group."""
    runtime = bot.conversations.runtime

    async def admin(
        body: dict[str, Any],
        ack: AsyncAck,
        respond: AsyncRespond,
        client: AsyncWebClient,
        args: str,
    ) -> None:
        user = str(body.get("user_id", ""))
        if admin_usergroup is None:
            await ack(
                response_type="ephemeral",
                text="Admin commands are off here: SWITCHBOARD_ADMIN_USERGROUP is not set.",
            )
            return
        if user not in await bot.conversations.directory.group_members(admin_usergroup):
            log.warning("admin command refused for %s: not in %s", user, admin_usergroup)
            await ack(
                response_type="ephemeral",
                text=f"Only members of <!subteam^{admin_usergroup}> can use admin commands.",
            )
            return
        action, _, rest = args.partition(" ")
        name, _, reason = rest.strip().partition(" ")
        action, name = action.lower(), name.lower()
        try:
            if action == "status":
                await ack(response_type="ephemeral", text=await _status(gate, runtime))
            elif action == "usage" and runs is not None:
                await ack(response_type="ephemeral", text=await _usage(runs, rest))
            elif action in {"disable", "enable"} and name:
                if name not in runtime.registry:
                    await ack(
                        response_type="ephemeral",
                        text=f"There is no skill named `{escape_mrkdwn(name)}`.",
                    )
                    return
                enabled = action == "enable"
                await gate.set_enabled(name, enabled, by=user, reason=reason.strip() or None)
                state = "on again" if enabled else "off for everyone until enabled again"
                await ack(response_type="ephemeral", text=f"`{name}` is now switched {state}.")
            else:
                await ack(response_type="ephemeral", text=ADMIN_USAGE)
        except Exception as exc:
            message, ref = user_error(exc)
            log.warning("admin %s failed ref=%s: %s", action, ref, exc)
            await ack(response_type="ephemeral", text=message)

    bot.subcommands["admin"] = admin
    bot.help_lines.append(
        "`/switchboard admin …` — switch skills off and on, usage and cost (admins)"
    )


async def _usage(runs: RunStore, args: str) -> str:
    try:
        days = parse_usage_args(args)
    except UsageArgsError:
        return f"Usage: {USAGE_HELP}"
    since = datetime.now(UTC) - timedelta(days=days)
    tables: dict[UsageDimension, list[UsageRow]] = {
        "skill": await runs.usage(since=since, by="skill"),
        "user": await runs.usage(since=since, by="user", limit=TOP + 1),
        "channel": await runs.usage(since=since, by="channel", limit=TOP + 1),
    }
    return usage_text(tables, days=days, since=since)


async def _status(gate: SkillGate, runtime: Any) -> str:
    off = await gate.switched_off()
    lines = [
        f"• `{name}` switched off by <@{state.by}>"
        + (f": {escape_mrkdwn(state.reason)}" if state.reason else "")
        for name, state in sorted(off.items())
    ]
    budgets = [
        f"• `{skill.name}`: {skill.spec.budget.daily_tokens:,} tokens a day"
        for skill in runtime.registry
        if skill.spec is not None and skill.spec.budget is not None
    ]
    return "\n".join(
        [
            "*Switched off:*" if lines else "No skill is switched off.",
            *lines,
            *(["*Daily budgets:*", *budgets] if budgets else []),
        ]
    )
