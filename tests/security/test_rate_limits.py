"""Unbounded consumption: one person (or one channel) flooding the bot is slowed down.

A user fires mentions (and slash commands) as fast as they can. Past their bucket the bot
answers one friendly ephemeral note per wait and starts no run: the model sees nothing.
Other people keep being answered. Through the app, on both backends; the bucket math is
also checked directly against Redis with explicit times.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from redis.asyncio import Redis

from storage.keys import Keys
from storage.ratelimit import Rate, RateLimiter
from tests.bot.conftest import BotEnv, BotFactory
from tests.fakes.chat import ScriptedChatModel

SLOW_DOWN = "You're sending requests faster than I can answer; try again in"


def ephemerals(env: BotEnv, user: str) -> list[str]:
    return [
        str(c.args.get("text"))
        for c in env.slack.calls("chat.postEphemeral")
        if c.ok and c.args.get("user") == user
    ]


async def flood_bot(make_bot: BotFactory, **settings: str) -> tuple[BotEnv, ScriptedChatModel]:
    model = ScriptedChatModel([], default="On it.")
    env = await make_bot({"offline": model}, **settings)
    return env, model


async def test_rate_limits_a_flooding_user_gets_one_note_and_no_runs(
    make_bot: BotFactory,
) -> None:
    env, model = await flood_bot(make_bot, SWITCHBOARD_USER_RATE="3/1m")
    for i in range(8):
        await env.mention(f"ask question {i}", user="U0SAM")
    await env.idle()

    assert len(model.calls) == 3, "runs past the limit reached the model"
    notes = ephemerals(env, "U0SAM")
    assert len(notes) == 1, notes  # one note per wait, not one per message
    assert notes[0].startswith(SLOW_DOWN) and notes[0].endswith(" s.")
    wait = int(notes[0].removeprefix(SLOW_DOWN).strip().split()[0])
    assert 1 <= wait <= 20  # a token every 20 s

    # positive control: someone else in the same channel is still answered
    await env.mention("ask something else", user="U0CAROL")
    await env.idle()
    assert len(model.calls) == 4
    assert ephemerals(env, "U0CAROL") == []

    # every bucket key expires
    redis = env.services.redis
    keys = [k async for k in redis.scan_iter(match=f"{env.services.keys.prefix}:rate:*")]
    assert keys
    for key in keys:
        assert 0 < await redis.pttl(key) <= 61_000


async def test_rate_limits_a_busy_channel_is_limited_as_a_whole(make_bot: BotFactory) -> None:
    env, model = await flood_bot(make_bot, SWITCHBOARD_CHANNEL_RATE="2/1m")
    for user in ("U0SAM", "U0CAROL", "U0DEV"):
        await env.mention("ask hello", user=user, channel="C0GENERAL")
    await env.idle()
    assert len(model.calls) == 2
    assert ephemerals(env, "U0DEV")[0].startswith(SLOW_DOWN)
    # positive control: another channel has its own bucket
    await env.mention("ask hello", user="U0DEV", channel="C0PAYMENTS")
    await env.idle()
    assert len(model.calls) == 3


async def test_rate_limits_slash_commands_share_the_bucket(make_bot: BotFactory) -> None:
    env, model = await flood_bot(make_bot, SWITCHBOARD_USER_RATE="1/1m")
    first = await env.command("ask what is up")
    second = (await env.command("ask again")).json()["text"]
    await env.idle()
    assert first.status_code == 200 and first.text == ""  # admitted: acked silently
    assert second.startswith(SLOW_DOWN)
    assert len(model.calls) == 1


async def test_rate_limits_can_be_turned_off(make_bot: BotFactory) -> None:
    env, model = await flood_bot(
        make_bot, SWITCHBOARD_USER_RATE="off", SWITCHBOARD_CHANNEL_RATE="off"
    )
    for i in range(12):
        await env.mention(f"ask question {i}")
    await env.idle()
    assert len(model.calls) == 12
    assert ephemerals(env, "U0SAM") == []


async def test_rate_limits_bucket_refills_and_takes_all_or_nothing(
    redis: Redis, keys: Keys
) -> None:
    limiter = RateLimiter(redis=redis, keys=keys)
    user, channel = Rate(2, timedelta(seconds=10)), Rate(3, timedelta(seconds=10))
    buckets = [("user:T1:U1", user), ("channel:T1:C1", channel)]
    t = 1_000_000.0
    assert await limiter.take(buckets, now=t) == 0
    assert await limiter.take(buckets, now=t) == 0
    assert await limiter.take(buckets, now=t) == pytest.approx(5.0)  # user empty: 1 per 5 s
    # the refused call took nothing from the channel: it still has one token left
    assert await limiter.take([("channel:T1:C1", channel)], now=t) == 0
    assert await limiter.take([("channel:T1:C1", channel)], now=t) > 0
    assert await limiter.take(buckets, now=t + 5) == 0  # refilled one user token
    # a clock that went backwards (another replica) mints nothing
    assert await limiter.take([("user:T1:U1", user)], now=t - 100) > 0


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("10/1m", Rate(10, timedelta(minutes=1))),
        ("5/30s", Rate(5, timedelta(seconds=30))),
        ("100/d", Rate(100, timedelta(days=1))),
        ("off", None),
    ],
)
def test_rate_limits_setting_forms(text: str, rate: Rate | None) -> None:
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["10", "ten/1m", "0/1m", "5/0s", "10/1y"])
def test_rate_limits_bad_setting_stops_start_up(text: str) -> None:
    from switchboard.settings import ConfigError, Settings

    with pytest.raises(ConfigError, match=r"^SWITCHBOARD_USER_RATE: invalid value"):
        Settings.from_env({"SWITCHBOARD_USER_RATE": text})
