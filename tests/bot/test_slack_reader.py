"""``WebApiSlackReader`` against the fake Slack server: pagination, names, caches, errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.directory import Directory
from bot.slack.client import create_web_client
from bot.slack.reader import MISSING, TtlCache, WebApiSlackReader
from skills.context import SlackReader, SlackReaderError
from skills.registry import SkillRegistry
from tests.fakes.slack_api import FakeSlackApi, slack_api_server

START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def ts_at(moment: datetime) -> str:
    return f"{moment.timestamp():.6f}"


@pytest.fixture
def slack() -> Iterator[FakeSlackApi]:
    with slack_api_server() as server:
        server.add_user(
            "U1", "alice", real_name="Alice Liddell", display_name="ali", tz="Europe/Paris"
        )
        server.add_user("U2", "bob", real_name="Bob Builder", title="On-call")
        server.add_channel("C1", "payments-ops", members=["U1", "U2"])
        yield server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reader_for(slack: FakeSlackApi, **options: object) -> WebApiSlackReader:
    client = create_web_client(
        token=slack.token, base_url=slack.base_url, backoff=0.01, max_retry_after=2
    )
    return WebApiSlackReader(client=client, **options)  # type: ignore[arg-type]


def seed_channel(slack: FakeSlackApi, count: int) -> list[str]:
    users = ["U1", "U2"]
    return [
        slack.add_message(
            "C1", f"message {i}", user=users[i % 2], ts=ts_at(START + timedelta(minutes=i))
        )
        for i in range(count)
    ]


def test_reader_satisfies_the_protocol(slack: FakeSlackApi) -> None:
    assert isinstance(reader_for(slack), SlackReader)


async def test_channel_messages_follow_every_page_and_come_oldest_first(
    slack: FakeSlackApi,
) -> None:
    seeded = seed_channel(slack, 450)
    reader = reader_for(slack, page_size=200)

    messages = await reader.channel_messages("C1", oldest=START - timedelta(days=1))

    assert [m.ts for m in messages] == seeded
    assert messages[0].text == "message 0" and messages[-1].text == "message 449"
    calls = slack.calls("conversations.history")
    assert len(calls) == 3
    assert all(int(c.args["limit"]) <= 200 for c in calls)
    assert "cursor" not in calls[0].args and calls[1].args["cursor"] and calls[2].args["cursor"]


async def test_channel_messages_resolve_names_with_one_lookup_per_person(
    slack: FakeSlackApi,
) -> None:
    seed_channel(slack, 30)
    slack.add_message("C1", "deploy done", bot_id="B9", username="deploybot", subtype="bot_message")
    reader = reader_for(slack)

    messages = await reader.channel_messages("C1", oldest=START)
    await reader.channel_messages("C1", oldest=START)

    by_user = {m.user: m.user_name for m in messages}
    assert by_user == {"U1": "ali", "U2": "Bob Builder", None: "deploybot"}
    assert messages[-1].bot is True and not messages[0].bot
    assert sorted(c.args["user"] for c in slack.calls("users.info")) == ["U1", "U2"]


async def test_channel_messages_window_includes_oldest_and_excludes_latest(
    slack: FakeSlackApi,
) -> None:
    seeded = seed_channel(slack, 10)
    reader = reader_for(slack)

    window = await reader.channel_messages(
        "C1", oldest=START + timedelta(minutes=2), latest=START + timedelta(minutes=5)
    )
    following = await reader.channel_messages(
        "C1", oldest=START + timedelta(minutes=5), latest=START + timedelta(minutes=8)
    )

    assert [m.ts for m in window] == seeded[2:5]
    assert [m.ts for m in following] == seeded[5:8]


async def test_channel_messages_over_the_limit_keep_the_newest(slack: FakeSlackApi) -> None:
    seeded = seed_channel(slack, 450)
    reader = reader_for(slack, page_size=200)

    messages = await reader.channel_messages("C1", oldest=START, limit=250)

    assert [m.ts for m in messages] == seeded[-250:]
    assert [int(c.args["limit"]) for c in slack.calls("conversations.history")] == [200, 50]


async def test_channel_messages_leave_out_replies_and_housekeeping(slack: FakeSlackApi) -> None:
    root = slack.add_message("C1", "incident?", user="U1", ts=ts_at(START))
    slack.add_message(
        "C1", "yes", user="U2", thread_ts=root, ts=ts_at(START + timedelta(seconds=5))
    )
    slack.add_message(
        "C1", "<@U2> has joined", user="U2", subtype="channel_join", ts=ts_at(START + timedelta(1))
    )

    messages = await reader_for(slack).channel_messages("C1", oldest=START)

    assert [(m.text, m.reply_count, m.thread_ts) for m in messages] == [("incident?", 1, root)]


@pytest.mark.parametrize("repeat_root", [True, False])
async def test_thread_messages_paginate_without_repeating_the_root(
    slack: FakeSlackApi, repeat_root: bool
) -> None:
    slack.repeat_thread_root = repeat_root
    root = slack.add_message("C1", "root", user="U1", ts=ts_at(START))
    replies = [
        slack.add_message(
            "C1",
            f"reply {i}",
            user="U2",
            thread_ts=root,
            ts=ts_at(START + timedelta(seconds=i + 1)),
        )
        for i in range(450)
    ]
    reader = reader_for(slack, page_size=200)

    thread = await reader.thread_messages("C1", root, limit=1000)

    assert [m.ts for m in thread] == [root, *replies]
    assert thread[0].text == "root" and thread[0].reply_count == 450
    assert thread[1].user_name == "Bob Builder"
    assert len(slack.calls("conversations.replies")) == 3

    short = await reader.thread_messages("C1", root, limit=50)
    assert [m.ts for m in short] == [root, *replies[-49:]]


async def test_user_info_maps_the_profile_and_caches_misses(slack: FakeSlackApi) -> None:
    reader = reader_for(slack)

    alice = await reader.user_info("U1")
    bob = await reader.user_info("U2")
    nobody = await reader.user_info("U404")
    await reader.user_info("U404")

    assert alice is not None and bob is not None
    assert (alice.name, alice.real_name, alice.tz) == ("ali", "Alice Liddell", "Europe/Paris")
    assert (bob.name, bob.title, bob.is_bot) == ("Bob Builder", "On-call", False)
    assert nobody is None
    assert [c.args["user"] for c in slack.calls("users.info")] == ["U1", "U2", "U404"]


async def test_user_cache_expires(slack: FakeSlackApi) -> None:
    clock = Clock()
    reader = reader_for(slack, user_ttl=300, clock=clock)

    await reader.user_info("U1")
    clock.now += 299
    await reader.user_info("U1")
    slack.add_user("U1", "alice", display_name="Alice (away)")
    clock.now += 2
    refreshed = await reader.user_info("U1")

    assert refreshed is not None and refreshed.name == "Alice (away)"
    assert len(slack.calls("users.info")) == 2


def test_ttl_cache_is_bounded_and_evicts_least_recently_used() -> None:
    clock = Clock()
    cache: TtlCache[str, int | None] = TtlCache(ttl=10, max_size=2, clock=clock)
    cache.put("a", 1)
    cache.put("b", None)  # a cached "no such thing" is a value, not a miss
    assert cache.get("b") is None
    assert cache.get("a") == 1  # "a" is now the most recently used
    cache.put("c", 3)

    assert len(cache) == 2
    assert cache.get("b") is MISSING
    assert (cache.get("a"), cache.get("c")) == (1, 3)
    clock.now += 11
    assert cache.get("a") is MISSING


async def test_usergroup_members_are_cached_briefly(slack: FakeSlackApi) -> None:
    slack.add_usergroup("S1", "support", ["U1", "U2"])
    clock = Clock()
    reader = reader_for(slack, usergroup_ttl=60, clock=clock)

    first = await reader.usergroup_members("S1")
    slack.add_usergroup("S1", "support", ["U1"])
    cached = await reader.usergroup_members("S1")
    clock.now += 61
    fresh = await reader.usergroup_members("S1")

    assert first == cached == frozenset({"U1", "U2"})
    assert fresh == frozenset({"U1"})
    assert len(slack.calls("usergroups.users.list")) == 2


async def test_channel_name(slack: FakeSlackApi) -> None:
    reader = reader_for(slack)
    client = create_web_client(token=slack.token, base_url=slack.base_url)
    dm = (await client.conversations_open(users="U1"))["channel"]["id"]

    assert await reader.channel_name("C1") == "payments-ops"
    assert await reader.channel_name("C404") is None
    assert await reader.channel_name(dm) is None


@pytest.mark.parametrize(
    ("call", "method", "error"),
    [
        ("history", "conversations.history", "channel_not_found"),
        ("history_elsewhere", "conversations.history", "not_in_channel"),
        ("thread", "conversations.replies", "thread_not_found"),
        ("usergroup", "usergroups.users.list", "no_such_subteam"),
    ],
)
async def test_slack_errors_become_reader_errors(
    slack: FakeSlackApi, call: str, method: str, error: str
) -> None:
    slack.add_channel("C2", "elsewhere", bot_is_member=False)
    reader = reader_for(slack)
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "history": lambda: reader.channel_messages("C404", oldest=START),
        "history_elsewhere": lambda: reader.channel_messages("C2", oldest=START),
        "thread": lambda: reader.thread_messages("C1", "1.000001"),
        "usergroup": lambda: reader.usergroup_members("S404"),
    }

    with pytest.raises(SlackReaderError) as raised:
        await calls[call]()

    assert (raised.value.method, raised.value.error) == (method, error)
    assert str(raised.value) == f"{method} failed: {error}"


async def test_rate_limits_and_outages_become_reader_errors(slack: FakeSlackApi) -> None:
    reader = reader_for(slack)

    slack.fail_next("users.info", status=429, retry_after=60)
    with pytest.raises(SlackReaderError) as limited:
        await reader.user_info("U1")
    slack.fail_next("conversations.info", drop=True, times=10)
    with pytest.raises(SlackReaderError) as dropped:
        await reader.channel_name("C1")
    slack.fail_next("usergroups.users.list", status=500, times=10)
    with pytest.raises(SlackReaderError) as broken:
        await reader.usergroup_members("S1")

    assert limited.value.error == "ratelimited"
    assert dropped.value.error.startswith("connection_error")
    assert broken.value.error == "internal_error"


async def test_a_transient_failure_mid_pagination_is_retried(slack: FakeSlackApi) -> None:
    seeded = seed_channel(slack, 450)
    reader = reader_for(slack, page_size=200)
    slack.fail_next("conversations.history", status=503)
    slack.fail_next("conversations.history", drop=True)

    messages = await reader.channel_messages("C1", oldest=START)

    assert [m.ts for m in messages] == seeded


async def test_a_failed_name_lookup_does_not_fail_the_read(slack: FakeSlackApi) -> None:
    seed_channel(slack, 4)
    # Longer than the reader's client will wait, for both authors' lookups.
    slack.fail_next("users.info", status=429, retry_after=60, times=2)
    reader = reader_for(slack)

    messages = await reader.channel_messages("C1", oldest=START)

    assert [(m.text, m.user, m.user_name) for m in messages] == [
        ("message 0", "U1", None),
        ("message 1", "U2", None),
        ("message 2", "U1", None),
        ("message 3", "U2", None),
    ]


async def test_noise_does_not_count_against_the_limit(slack: FakeSlackApi) -> None:
    for i in range(10):
        slack.add_message(
            "C1",
            "joined",
            user="U2",
            subtype="channel_join",
            ts=ts_at(START + timedelta(hours=1, minutes=i)),
        )
    seeded = seed_channel(slack, 5)
    reader = reader_for(slack, page_size=4)

    messages = await reader.channel_messages("C1", oldest=START, limit=3)

    assert [m.ts for m in messages] == seeded[-3:]


async def test_a_group_slack_does_not_know_is_not_asked_for_on_every_turn(
    slack: FakeSlackApi,
) -> None:
    """A spec naming a deleted group (or a typo) must not cost a Web API call per answer
    (``usergroups.users.list`` is a Tier 2 method: about 20 calls a minute)."""
    slack.add_usergroup("S1", "support", ["U1"])
    directory = Directory(
        reader=reader_for(slack), registry=SkillRegistry([]), extra_groups=("S1", "S404")
    )

    for _ in range(5):
        actor = await directory.actor("U1", strict=True)
        assert actor.usergroups == frozenset({"S1"})
    asked = [c.args["usergroup"] for c in slack.calls("usergroups.users.list")]
    fresh = await directory.actor("U1", fresh=True)  # decisions still ask Slack
    asked_fresh = [c.args["usergroup"] for c in slack.calls("usergroups.users.list")]

    assert asked.count("S404") == 1 and asked.count("S1") == 1
    assert fresh.usergroups == frozenset({"S1"})
    assert asked_fresh.count("S404") == 2 and asked_fresh.count("S1") == 2
