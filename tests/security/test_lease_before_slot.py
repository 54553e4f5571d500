"""Unbounded consumption: a message waiting for its thread holds no answer slot.

Thread A is busy (another replica holds its lease, as during a long run). A new message in
thread A must wait - two messages on one thread never run at once - but waiting must not
occupy one of the process's answer slots, or a handful of messages on busy threads would
stall everyone else for up to ``thread_wait_timeout`` (600 s). With one slot, a message
on thread B is answered while thread A's message waits; A's is answered once its thread
is free. Through the app, on both backends.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from skills.context import ThreadRef
from tests.bot.conftest import TEAM, BotEnv, BotFactory
from tests.fakes.chat import ScriptedChatModel


async def answered(env: BotEnv, channel: str, ts: str, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if env.answered_replies(channel, ts):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_lease_before_slot_waiting_for_a_thread_does_not_block_others(
    make_bot: BotFactory,
) -> None:
    model = ScriptedChatModel([], default="Answer.")
    env = await make_bot({"offline": model}, SWITCHBOARD_MAX_CONCURRENT_RUNS="1")
    root_a = env.slack.add_message("C0GENERAL", "incident thread", user="U0DEV")
    thread_a = ThreadRef(team=TEAM, channel="C0GENERAL", thread_ts=root_a)
    lease = await env.services.locks.acquire(
        f"thread:{thread_a.thread_id}", ttl=timedelta(seconds=30), holder="other-replica"
    )
    assert lease is not None

    await env.mention("ask status of the incident?", thread_ts=root_a, user="U0DEV")
    await asyncio.sleep(0.3)  # A's message is now waiting for its thread
    _, ts_b = await env.mention("ask what time is it?", user="U0SAM")

    assert await answered(env, "C0GENERAL", ts_b, timeout=5), "B waited behind A's lease"
    # A still waits (its placeholder says so): one run per thread
    assert env.answered_replies("C0GENERAL", root_a) == []

    # positive control: once the thread is free, A is answered too
    await env.services.locks.release(lease)
    assert await answered(env, "C0GENERAL", root_a, timeout=10)
    await env.idle()
    assert len(model.calls) == 2
