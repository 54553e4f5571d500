"""Finding 5 (medium): schedule buttons, targets and firings.

Carol clicks Pause, Run now and Delete on Sam's schedule; Ben schedules a digest of
#hr-private (as the target, or named in the input) although he is not in it; Ana's digest
of #hr-private keeps firing after she left the channel. Each must be refused (audited), and
no firing may post what its owner can no longer read. Positive controls: the owner and a
member of ``SWITCHBOARD_ADMIN_USERGROUP`` change schedules; Ana's digest posts while she
is a member.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from bot.views import schedules as sviews
from scheduler.service import SchedulerService
from storage.schedules import Schedule
from switchboard.scheduling import build_scheduler
from switchboard.serve import install_schedules
from tests.bot.conftest import TEAM, BotEnv, BotFactory
from tests.fakes.chat import ScriptedChatModel, reply
from tests.fakes.slack_api import FakeSlackApi
from tests.scheduler.conftest import FAST, eventually
from tests.security.conftest import HR_CHANNEL, HR_SECRET, audit_events, bot_posts


def _echo_prompt(messages: list[BaseMessage]) -> Any:
    return reply(" ".join(str(m.content) for m in messages))


@dataclass
class Env:
    bot: BotEnv
    scheduler: SchedulerService


Factory = Callable[..., Any]


@pytest.fixture
async def schedules_bot(
    make_bot: BotFactory, authz_workspace: FakeSlackApi
) -> AsyncIterator[Callable[..., Any]]:
    """Builds a bot replica with the schedules feature and a running scheduler."""
    authz_workspace.add_usergroup("S0ADMINS", "switchboard-admins", ["U0DEV"])
    started: list[SchedulerService] = []

    async def build(**settings: str) -> Env:
        model = ScriptedChatModel([_echo_prompt] * 50)
        bot = await make_bot(lambda _name: model, **settings)
        scheduler = build_scheduler(bot.services, client=bot.bot.client, config=FAST)
        install_schedules(bot.bot, bot.services, scheduler)
        await scheduler.start()
        started.append(scheduler)
        return Env(bot=bot, scheduler=scheduler)

    try:
        yield build
    finally:
        for scheduler in started:
            await scheduler.stop()


def _ack(response: Any) -> dict[str, Any]:
    assert response.status_code == 200
    return dict(json.loads(response.text)) if response.text else {}


async def click(env: Env, action_id: str, row: Schedule, user: str) -> None:
    await env.bot.action(
        {
            "type": "block_actions",
            "team": {"id": TEAM},
            "user": {"id": user},
            "channel": {"id": "C0GENERAL"},
            "container": {"type": "message", "is_ephemeral": True},
            "actions": [{"action_id": action_id, "value": row.id, "type": "button"}],
        }
    )
    await env.bot.idle()


async def current(env: Env, row: Schedule) -> Schedule | None:
    return await env.scheduler.store.get(row.id)


# --------------------------------------------------------------------------- buttons


async def test_someone_elses_schedule_cannot_be_paused_run_or_deleted(
    schedules_bot: Factory,
) -> None:
    env = await schedules_bot(SWITCHBOARD_ADMIN_USERGROUP="S0ADMINS")
    _ack(await env.bot.command("schedule ask every day at 9:00 -- anything new?", user="U0SAM"))
    [row] = await env.scheduler.store.list_schedules()

    for action in (sviews.PAUSE, sviews.RUN_NOW, sviews.DELETE):
        await click(env, action, row, "U0CAROL")
    fresh = await current(env, row)
    assert fresh is not None and fresh.enabled and fresh.run_requested_at is None
    await click(env, sviews.PAUSE, row, "U0SAM")  # the owner may; now try Resume
    await click(env, sviews.RESUME, row, "U0CAROL")
    fresh = await current(env, row)
    assert fresh is not None and not fresh.enabled
    refused = await audit_events(env.bot, "refused-schedule")
    assert [(r.actor, r.summary.split()[0]) for r in refused] == [
        ("U0CAROL", "pause"),
        ("U0CAROL", "run"),
        ("U0CAROL", "delete"),
        ("U0CAROL", "resume"),
    ]
    assert await env.scheduler.store.firings.runs(row.id) == []  # Run now did not run as Sam


async def test_positive_control_the_owner_and_an_admin_may(schedules_bot: Factory) -> None:
    env = await schedules_bot(SWITCHBOARD_ADMIN_USERGROUP="S0ADMINS")
    _ack(await env.bot.command("schedule ask every day at 9:00 -- anything new?", user="U0SAM"))
    [row] = await env.scheduler.store.list_schedules()

    await click(env, sviews.PAUSE, row, "U0SAM")
    fresh = await current(env, row)
    assert fresh is not None and fresh.paused_reason == "paused by <@U0SAM>"
    await click(env, sviews.RESUME, row, "U0DEV")  # Dev is in S0ADMINS
    await click(env, sviews.RUN_NOW, row, "U0DEV")
    await env.bot.slack.wait_for("chat.postMessage", timeout=5)
    await click(env, sviews.DELETE, row, "U0DEV")
    assert await current(env, row) is None
    assert await audit_events(env.bot, "refused-schedule") == []


# --------------------------------------------------------------------------- creating


@pytest.mark.parametrize(
    "line",
    [
        f"schedule digest <#{HR_CHANNEL}|hr-private> every day at 9:00",
        f"schedule digest every day at 9:00 -- <#{HR_CHANNEL}|hr-private> 24h",
        f"schedule standup <!subteam^S0ADMINS|@admins> <#{HR_CHANNEL}|hr> every day at 9:30",
    ],
)
async def test_a_schedule_cannot_use_a_channel_its_creator_is_not_in(
    schedules_bot: Factory, line: str
) -> None:
    env = await schedules_bot()
    ack = _ack(await env.bot.command(line, user="U0BEN"))
    assert f"not a member of <#{HR_CHANNEL}>" in ack["text"]
    assert await env.scheduler.store.list_schedules() == []
    [refused] = await audit_events(env.bot, "refused-schedule")
    assert refused.actor == "U0BEN" and HR_CHANNEL in refused.summary


async def test_the_form_cannot_target_a_channel_its_creator_is_not_in(
    schedules_bot: Factory,
) -> None:
    env = await schedules_bot()
    _ack(await env.bot.command("schedule", user="U0BEN"))
    view = (await env.bot.slack.wait_for("views.open"))[-1].args["view"]
    values = {
        sviews.SKILL: {sviews.SKILL: {"selected_option": {"value": "digest"}}},
        sviews.INPUT: {sviews.INPUT: {"value": "24h"}},
        sviews.CHANNEL: {sviews.CHANNEL: {"selected_conversation": HR_CHANNEL}},
        sviews.WHEN: {sviews.WHEN: {"value": "every day at 9:00"}},
        sviews.TZ: {sviews.TZ: {"value": "UTC"}},
    }
    submission = {
        "type": "view_submission",
        "team": {"id": TEAM},
        "user": {"id": "U0BEN"},
        "view": {**view, "id": "V1", "state": {"values": values}},
    }
    ack = _ack(await env.bot.action(submission))
    assert ack["response_action"] == "errors"
    assert "not a member" in ack["errors"][sviews.CHANNEL]
    assert await env.scheduler.store.list_schedules() == []


# --------------------------------------------------------------------------- firing


async def _digest_of_hr(env: Env) -> Schedule:
    line = f"schedule digest every 1 second -- <#{HR_CHANNEL}|hr-private> 24h"
    ack = _ack(await env.bot.command(line, user="U0ANA"))
    assert "Scheduled *digest*" in ack["text"], ack
    [row] = await env.scheduler.store.list_schedules()
    return row


def _secret_posts(env: Env) -> int:
    return sum(HR_SECRET in text for text in bot_posts(env.bot, "C0GENERAL"))


async def test_positive_control_a_members_scheduled_digest_posts(schedules_bot: Factory) -> None:
    env = await schedules_bot()
    await _digest_of_hr(env)
    await eventually(lambda: _secret_posts(env) >= 1, timeout=8)


async def test_a_firing_after_the_owner_left_the_channel_reads_nothing(
    schedules_bot: Factory,
) -> None:
    env = await schedules_bot()
    row = await _digest_of_hr(env)
    await eventually(lambda: _secret_posts(env) >= 1, timeout=8)

    env.bot.slack.set_members(HR_CHANNEL, ["U0CAROL"])  # Ana leaves #hr-private
    posted = _secret_posts(env)
    history_reads = len(env.bot.slack.calls("conversations.history"))

    async def failed() -> bool:
        runs = await env.scheduler.store.firings.runs(row.id)
        return sum(r.status == "failed" for r in runs) >= 2

    await eventually(failed, timeout=10)
    assert _secret_posts(env) == posted
    assert len(env.bot.slack.calls("conversations.history")) == history_reads
    dm = env.bot.slack.messages("D0ANA")[-1]["text"]
    assert "acts as its owner <@U0ANA>, who may not read <#G0HRPRIV>" in dm


async def test_a_firing_after_the_owner_left_the_target_channel_posts_nothing(
    schedules_bot: Factory,
) -> None:
    env = await schedules_bot()
    ack = _ack(await env.bot.command("schedule ask every 1 second -- say hi", user="U0ANA"))
    assert "Scheduled *ask*" in ack["text"]
    [row] = await env.scheduler.store.list_schedules()
    await eventually(lambda: len(bot_posts(env.bot, "C0GENERAL")) >= 1, timeout=8)

    env.bot.slack.set_members("C0GENERAL", ["U0SAM", "U0CAROL", "U0DEV", "U0BEN"])
    await eventually(lambda: _has_failure(env, row), timeout=10)
    settled = len(bot_posts(env.bot, "C0GENERAL"))
    await eventually(lambda: _failures(env, row, at_least=3), timeout=10)
    assert len(bot_posts(env.bot, "C0GENERAL")) == settled
    dm = env.bot.slack.messages("D0ANA")[-1]["text"]
    assert "is no longer a member of <#C0GENERAL>" in dm


async def _failures(env: Env, row: Schedule, *, at_least: int) -> bool:
    runs = await env.scheduler.store.firings.runs(row.id)
    return sum(r.status == "failed" for r in runs) >= at_least


async def _has_failure(env: Env, row: Schedule) -> bool:
    return await _failures(env, row, at_least=1)


async def test_a_standup_whose_owner_left_the_channel_asks_nobody(schedules_bot: Factory) -> None:
    env = await schedules_bot()
    env.bot.slack.add_usergroup("S0TEAM", "team", ["U0SAM", "U0CAROL"])
    line = "schedule standup <!subteam^S0TEAM|@team> #general in 2 seconds for 3 seconds"
    assert "Scheduled *standup*" in _ack(await env.bot.command(line, user="U0ANA"))["text"]
    [row] = await env.scheduler.store.list_schedules()
    env.bot.slack.set_members("C0GENERAL", ["U0SAM", "U0CAROL", "U0DEV"])  # Ana leaves

    await eventually(lambda: _has_failure(env, row), timeout=10)
    # The failure is recorded first and the owner's DM sent right after: wait for it too.
    told = "is no longer a member of <#C0GENERAL>"
    await eventually(lambda: told in env.bot.slack.messages("D0ANA")[-1]["text"], timeout=10)

    prompted = [c for c in env.bot.slack.calls("chat.postMessage") if c.args["channel"] != "U0ANA"]
    assert not [c for c in prompted if "Stand-up time" in str(c.args.get("text", ""))]
    assert told in env.bot.slack.messages("D0ANA")[-1]["text"]
