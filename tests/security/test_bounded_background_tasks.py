"""Unbounded consumption: past its cap the worker says "busy" instead of piling up tasks.

Every message used to become a background task, however many were already waiting. With
``SWITCHBOARD_MAX_BACKGROUND_TASKS=2`` and two answers in flight (waiting for busy
threads), a third message gets an immediate ephemeral "busy" note and starts nothing; once
the work drains, messages are answered again. Through the app, on both backends.
"""

from __future__ import annotations

from datetime import timedelta

from bot.conversations import BUSY_TEXT
from skills.context import ThreadRef
from tests.bot.conftest import TEAM, BotFactory
from tests.fakes.chat import ScriptedChatModel


async def test_bounded_background_tasks_a_full_worker_answers_busy(
    make_bot: BotFactory,
) -> None:
    model = ScriptedChatModel([], default="Answer.")
    env = await make_bot(
        {"offline": model},
        SWITCHBOARD_MAX_BACKGROUND_TASKS="2",
        SWITCHBOARD_USER_RATE="off",
        SWITCHBOARD_CHANNEL_RATE="off",
    )
    leases = []
    for user in ("U0DEV", "U0CAROL"):
        root = env.slack.add_message("C0GENERAL", "busy thread", user=user)
        thread = ThreadRef(team=TEAM, channel="C0GENERAL", thread_ts=root)
        lease = await env.services.locks.acquire(
            f"thread:{thread.thread_id}", ttl=timedelta(seconds=30), holder="elsewhere"
        )
        assert lease is not None
        leases.append(lease)
        await env.mention("ask anything new?", thread_ts=root, user=user)
    assert env.bot.worker.pending == 2

    response, _ = await env.mention("ask what time is it?", user="U0SAM")
    assert response.status_code == 200
    notes = [str(c.args["text"]) for c in env.slack.calls("chat.postEphemeral") if c.ok]
    assert notes == [BUSY_TEXT]
    assert env.bot.worker.pending == 2
    assert env.bot.metrics.registry.get_sample_value("switchboard_busy_refusals_total") == 1

    # positive control: once the work drains, the next message is answered
    for lease in leases:
        await env.services.locks.release(lease)
    await env.idle()
    _, ts = await env.mention("ask what time is it now?", user="U0SAM")
    await env.idle()
    assert env.replies("C0GENERAL", ts)
    assert len(model.calls) == 3
