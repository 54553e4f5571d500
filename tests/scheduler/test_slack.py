"""Schedules through Slack: the one-line command, the list and its buttons, the modal, and
the stand-up end to end — signed requests into a bot replica, posts on the fake Slack."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from bot.schedules import SchedulesFeature
from bot.views import schedules as sviews
from scheduler.service import SchedulerService
from switchboard.scheduling import build_scheduler
from switchboard.serve import install_schedules
from tests.bot.conftest import BotEnv, BotFactory, make_bot, slack_api  # noqa: F401
from tests.fakes.chat import ScriptedChatModel
from tests.scheduler.conftest import FAST, eventually


@dataclass
class Env:
    bot: BotEnv
    scheduler: SchedulerService
    feature: SchedulesFeature


@pytest.fixture
async def env(make_bot: BotFactory) -> AsyncIterator[Env]:  # noqa: F811
    model = ScriptedChatModel(default="Payments were quiet.")
    bot = await make_bot(lambda _name: model)
    bot.slack.add_usergroup("S0TEAM", "team", ["U0SAM", "U0CAROL", "U0DEV"])
    # as serve runs it: firings on the run queue, which this bot's workers take
    scheduler = build_scheduler(bot.services, client=bot.bot.client, config=FAST, queued=True)
    feature = install_schedules(bot.bot, bot.services, scheduler)
    await scheduler.start()
    try:
        yield Env(bot=bot, scheduler=scheduler, feature=feature)
    finally:
        await scheduler.stop()


def _ack(response: Any) -> dict[str, Any]:
    assert response.status_code == 200
    return dict(json.loads(response.text)) if response.text else {}


async def test_one_line_command_saves_echoes_and_posts(env: Env) -> None:
    ack = _ack(
        await env.bot.command(
            "schedule digest #general every 1 second tz Asia/Dubai -- 24h", user="U0DEV"
        )
    )
    assert "Scheduled *digest* in <#C0GENERAL>" in ack["text"]
    assert "every second (Asia/Dubai)" in ack["text"] and "Next runs:" in ack["text"]
    [row] = await env.scheduler.store.list_schedules(channel="C0GENERAL")
    assert (row.skill, row.input_text, row.tz, row.owner) == (
        "digest",
        "24h",
        "Asia/Dubai",
        "U0DEV",
    )
    # the default zone is the creator's Slack zone
    _ack(await env.bot.command("schedule ask every day at 9:00", user="U0CAROL"))
    rows = await env.scheduler.store.list_schedules(owner="U0CAROL")
    assert [r.tz for r in rows] == ["Europe/Lisbon"]
    await env.scheduler.wait_leader()
    await env.bot.slack.wait_for("chat.postMessage", timeout=5)
    posted = [m for m in env.bot.slack.messages("C0GENERAL") if m.get("bot_id")]
    assert posted, "the firing posted its answer in the target channel"


async def test_bad_input_gets_examples_and_saves_nothing(env: Env) -> None:
    ack = _ack(await env.bot.command("schedule digest #general every fortnight"))
    assert "Try: every weekday at 9:00" in ack["text"]
    ack = _ack(await env.bot.command("schedule digest #elsewhere every day at 9"))
    assert "pick the channel" in ack["text"]
    assert await env.scheduler.store.list_schedules() == []
    help_text = _ack(await env.bot.command("help"))["text"]
    assert "/switchboard schedule digest #payments-alerts every weekday at 9:00" in help_text


async def test_list_and_buttons(env: Env) -> None:
    _ack(await env.bot.command("schedule ask every day at 9:00"))
    [row] = await env.scheduler.store.list_schedules()
    ack = _ack(await env.bot.command("schedules"))
    buttons = [e for b in ack["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [b["text"]["text"] for b in buttons] == ["Pause", "Run now", "Delete"]
    assert "next " in ack["blocks"][0]["text"]["text"]

    async def click(action_id: str, user: str = "U0SAM") -> None:
        await env.bot.action(
            {
                "type": "block_actions",
                "team": {"id": "T0FAKE"},
                "user": {"id": user},
                "channel": {"id": "C0GENERAL"},
                "container": {"type": "message", "is_ephemeral": True},
                "actions": [{"action_id": action_id, "value": row.id, "type": "button"}],
            }
        )
        await env.bot.idle()

    await click(sviews.PAUSE)
    fresh = await env.scheduler.store.get(row.id)
    assert fresh is not None and not fresh.enabled and fresh.paused_reason == "paused by <@U0SAM>"
    await click(sviews.RESUME)
    fresh = await env.scheduler.store.get(row.id)
    assert fresh is not None and fresh.enabled
    await click(sviews.RUN_NOW)
    await env.bot.slack.wait_for("chat.postMessage", timeout=5)
    await click(sviews.DELETE, user="U0CAROL")  # not the owner: refused
    assert await env.scheduler.store.get(row.id) is not None
    await click(sviews.DELETE)
    assert await env.scheduler.store.get(row.id) is None


async def test_modal(env: Env) -> None:
    _ack(await env.bot.command("schedule"))
    opened = await env.bot.slack.wait_for("views.open")
    view = opened[-1].args["view"]
    assert view["callback_id"] == sviews.SCHEDULE_MODAL
    tz_block = next(b for b in view["blocks"] if b["block_id"] == sviews.TZ)
    assert tz_block["element"]["initial_value"] == "America/New_York"  # U0SAM's zone

    def submission(when: str) -> dict[str, Any]:
        values = {
            sviews.SKILL: {sviews.SKILL: {"selected_option": {"value": "digest"}}},
            sviews.INPUT: {sviews.INPUT: {"value": "12h"}},
            sviews.CHANNEL: {sviews.CHANNEL: {"selected_conversation": "C0PAYMENTS"}},
            sviews.WHEN: {sviews.WHEN: {"value": when}},
            sviews.TZ: {sviews.TZ: {"value": "Europe/Lisbon"}},
        }
        return {
            "type": "view_submission",
            "team": {"id": "T0FAKE"},
            "user": {"id": "U0SAM"},
            "view": {**view, "id": "V1", "state": {"values": values}},
        }

    bad = _ack(await env.bot.action(submission("every blue moon")))
    assert bad["response_action"] == "errors" and sviews.WHEN in bad["errors"]
    assert await env.scheduler.store.list_schedules() == []
    _ack(await env.bot.action(submission("every monday at 10am")))
    await env.bot.idle()
    [row] = await env.scheduler.store.list_schedules()
    assert (row.channel_id, row.input_text, row.tz) == ("C0PAYMENTS", "12h", "Europe/Lisbon")
    confirmation = env.bot.slack.ephemeral[-1]
    assert confirmation["user"] == "U0SAM" and "every monday at 10:00" in confirmation["text"]


async def test_home_shows_my_schedules(env: Env) -> None:
    _ack(await env.bot.command("schedule ask every day at 9:00"))
    await env.bot.event({"type": "app_home_opened", "user": "U0SAM", "tab": "home"})
    await env.bot.idle()
    home = env.bot.slack.home_view("U0SAM")
    assert home is not None
    texts = [b.get("text", {}).get("text", "") for b in home["blocks"]]
    assert "Your schedules" in texts
    assert any("ask every day at 09:00 (America/New_York)" in t for t in texts)


async def test_standup_end_to_end_survives_a_restart(env: Env) -> None:
    slack = env.bot.slack
    ack = _ack(
        await env.bot.command(
            "schedule standup <!subteam^S0TEAM|@team> #general in 1 second for 3 seconds"
        )
    )
    assert "Scheduled *standup*" in ack["text"], ack
    prompts = await slack.wait_for("chat.postMessage", 3, timeout=6)
    dms = {c.args["channel"]: c.response["channel"] for c in prompts}
    assert set(dms) == {"U0SAM", "U0CAROL", "U0DEV"}

    capture = env.feature.capture_standup_reply
    assert await capture("T0FAKE", dms["U0SAM"], "U0SAM", "Fixed the refund bug.", "1.1")
    assert await capture(
        "T0FAKE", dms["U0SAM"], "U0SAM", "Blocked on review from the risk team.", "1.2"
    )
    assert await capture(
        "T0FAKE", dms["U0CAROL"], "U0CAROL", "Shipped the payout report.\nNo blockers.", "1.3"
    )
    # an ordinary DM from someone not asked is not swallowed
    assert not await capture("T0FAKE", "D0OTHER", "U0OTHERBOT", "hello", "1.4")

    # a restart while the stand-up is open: a fresh scheduler picks the state up from SQL
    await env.scheduler.stop()
    fresh = build_scheduler(env.bot.services, client=env.bot.bot.client, config=FAST)
    await fresh.start()
    try:

        def summaries() -> list[dict[str, Any]]:
            return [
                m
                for m in slack.messages("C0GENERAL")
                if m.get("bot_id") and "Stand-up summary" in m["text"]
            ]

        await eventually(lambda: summaries(), timeout=8)
        [summary] = summaries()
        text = summary["text"]
        assert "2 of 3 answered" in text
        blockers = text.split("*Blockers*")[1].split("*Answers*")[0]
        assert "<@U0SAM>: Blocked on review from the risk team." in blockers
        assert "U0CAROL" not in blockers
        assert "Fixed the refund bug." in text and "Shipped the payout report." in text
        assert "*No answer:* <@U0DEV>" in text
        assert not await capture("T0FAKE", dms["U0DEV"], "U0DEV", "late answer", "9.9")
    finally:
        await fresh.stop()


async def test_a_firing_slack_rate_limits_is_posted_later_not_failed(env: Env) -> None:
    """Slack keeps answering ``ratelimited`` to a firing's post (the client's retries run
    out): the answer is queued and posted once Slack takes it. The firing is not failed:
    it would count toward pausing the schedule, and the owner would be told it failed."""
    _ack(await env.bot.command("schedule ask every day at 9:00", user="U0SAM"))
    [row] = await env.scheduler.store.list_schedules()
    await env.scheduler.wait_leader()
    before = len(env.bot.slack.calls("chat.postMessage"))
    # the post and all three of the client's retries refused
    env.bot.slack.fail_next("chat.postMessage", status=429, retry_after=1, times=4)
    await env.scheduler.manager.run_now(row.id, by="U0SAM")
    await eventually(
        lambda: [m for m in env.bot.slack.messages("C0GENERAL") if m.get("bot_id")], timeout=30
    )
    await env.bot.idle(timeout=30)
    calls = env.bot.slack.calls("chat.postMessage")[before:]
    store = env.scheduler.store.firings
    counted = {st: await store.count(status=st) for st in ("ok", "failed", "running")}
    print(f"\npostMessage answered {[c.status for c in calls]}; firings {counted}")
    assert [c.status for c in calls] == [429, 429, 429, 429, 200]
    assert [m["text"] for m in env.bot.slack.messages("C0GENERAL") if m.get("bot_id")] == [
        "Payments were quiet."
    ]
    assert counted == {"ok": 1, "failed": 0, "running": 0}
    refused = env.bot.services.metrics.registry.get_sample_value(
        "switchboard_slack_api_errors_total",
        {"method": "chat.postMessage", "error": "ratelimited"},
    )
    assert refused == 1.0  # the deferral is counted, as for a conversation's answer
    fresh = await env.scheduler.store.get(row.id)
    assert fresh is not None and fresh.enabled


async def test_a_firing_answer_slack_posted_but_answered_502_to_is_posted_once(
    env: Env,
) -> None:
    """A gateway answers 502 to the post after Slack made it. The client used to retry it
    and post the digest twice; now the job looks for it (by its metadata key) and finds it."""
    _ack(await env.bot.command("schedule ask every day at 9:00", user="U0SAM"))
    [row] = await env.scheduler.store.list_schedules()
    await env.scheduler.wait_leader()
    slack = env.bot.slack
    slack.fail_next("chat.postMessage", status=502, done=True)
    await env.scheduler.manager.run_now(row.id, by="U0SAM")
    await eventually(lambda: slack.calls("conversations.history"), timeout=30)
    await env.bot.idle(timeout=30)
    posted = [m["text"] for m in slack.messages("C0GENERAL") if m.get("bot_id")]
    store = env.scheduler.store.firings
    counted = {st: await store.count(status=st) for st in ("ok", "failed")}
    print(f"\n#general: {posted}; firings {counted}")
    assert posted == ["Payments were quiet."]
    assert counted == {"ok": 1, "failed": 0}


async def test_a_queued_firing_answer_that_cannot_be_posted_is_told_to_its_owner(
    env: Env,
) -> None:
    """The queued answer then meets an error that will not pass (the bot was removed from
    the channel): nobody in the channel saw anything, so the owner is told in their DM,
    rather than the firing looking fine with no answer anywhere."""
    _ack(await env.bot.command("schedule ask every day at 9:00", user="U0SAM"))
    [row] = await env.scheduler.store.list_schedules()
    await env.scheduler.wait_leader()
    slack = env.bot.slack
    slack.fail_next("chat.postMessage", status=429, retry_after=1, times=4)
    slack.fail_next("chat.postMessage", status=200, error="not_in_channel", retry_after=None)
    await env.scheduler.manager.run_now(row.id, by="U0SAM")

    def told() -> list[str]:
        dms = [c for c in slack.calls("chat.postMessage") if c.args.get("channel") == "U0SAM"]
        return [str(c.args.get("text")) for c in dms if c.status == 200]

    await eventually(told, timeout=30)
    await env.bot.idle(timeout=30)
    print(f"\nthe owner's DM: {told()}")
    [dm] = told()
    assert "couldn't post its answer" in dm and row.id[:8] in dm and "<#C0GENERAL>" in dm
    assert not [m for m in slack.messages("C0GENERAL") if m.get("bot_id")]


async def test_a_standup_prompt_slack_posted_but_answered_502_to_is_sent_once(
    env: Env,
) -> None:
    """The first prompt's post meets a 502 after Slack made it. It used to be retried
    (that member got two prompts); now it is looked for in the DM, found, and recorded, so
    the member's reply still counts."""
    slack = env.bot.slack
    before = len(slack.calls("chat.postMessage"))
    slack.fail_next("chat.postMessage", status=502, done=True)
    _ack(
        await env.bot.command(
            "schedule standup <!subteam^S0TEAM|@team> #general in 1 second for 30 seconds"
        )
    )
    await slack.wait_for("chat.postMessage", 2, timeout=10)
    await eventually(lambda: len(slack.calls("chat.postMessage")) - before >= 3, timeout=10)
    await env.bot.idle(timeout=10)
    prompts = slack.calls("chat.postMessage")[before:]
    members = [str(c.args["channel"]) for c in prompts]
    dms = {m: slack.add_im(m)["id"] for m in members}
    got = {m: len(slack.messages(dms[m])) for m in members}
    print(f"\nprompts answered {[c.status for c in prompts]}; messages per DM {got}")
    assert sorted(members) == ["U0CAROL", "U0DEV", "U0SAM"]  # each posted once
    assert set(got.values()) == {1}
    first = members[0]
    assert await env.feature.capture_standup_reply("T0FAKE", dms[first], first, "Done.", "1.1")


async def test_a_standup_summary_slack_rate_limits_is_posted_later(env: Env) -> None:
    """The summary holds everyone's answers: when Slack keeps refusing it, it is queued and
    posted once Slack takes it, never lost."""
    slack = env.bot.slack
    _ack(
        await env.bot.command(
            "schedule standup <!subteam^S0TEAM|@team> #general in 1 second for 3 seconds"
        )
    )
    prompts = await slack.wait_for("chat.postMessage", 3, timeout=6)
    dms = {c.args["channel"]: c.response["channel"] for c in prompts}
    assert await env.feature.capture_standup_reply(
        "T0FAKE", dms["U0SAM"], "U0SAM", "Fixed the refund bug.", "1.1"
    )
    before = len(slack.calls("chat.postMessage"))
    slack.fail_next("chat.postMessage", status=429, retry_after=1, times=4)

    def summaries() -> list[str]:
        return [
            m["text"]
            for m in slack.messages("C0GENERAL")
            if m.get("bot_id") and "Stand-up summary" in m["text"]
        ]

    await eventually(summaries, timeout=30)
    await env.bot.idle(timeout=30)
    statuses = [c.status for c in slack.calls("chat.postMessage")[before:]]
    print(f"\nsummary's chat.postMessage answered {statuses}")
    assert statuses[:4] == [429, 429, 429, 429]
    [summary] = summaries()
    assert "Fixed the refund bug." in summary and "1 of 3 answered" in summary
