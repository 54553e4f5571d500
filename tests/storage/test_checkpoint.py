"""Conversation memory in Redis: retention, bounds, round trips, concurrency, real graphs.

The LangGraph contract itself is covered by the official suite in
``test_checkpoint_conformance.py``; these tests cover what Switchboard adds on top.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any, TypedDict
from uuid import uuid4

import fakeredis
import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)
from langgraph.checkpoint.serde.types import ERROR
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from redis.asyncio import Redis

from storage.checkpoint import RedisCheckpointSaver, reading_once
from storage.errors import RedisUnavailable
from storage.keys import Keys
from storage.redis import create_redis
from tests.conftest import TEST_REDIS_URL, _unavailable

DAY_MS = 24 * 3600 * 1000


# -- helpers --------------------------------------------------------------------------------


async def _prefix_keys(redis: Redis, keys: Keys) -> list[bytes]:
    return sorted([k async for k in redis.scan_iter(match=f"{keys.prefix}:*", count=500)])


@pytest.fixture
async def clean(redis: Redis, keys: Keys) -> AsyncIterator[None]:
    """Drop the test's keys afterwards (SCAN is fine in tests; the saver never uses it)."""
    yield
    doomed = await _prefix_keys(redis, keys)
    if doomed:
        await redis.delete(*doomed)


async def _turn(
    saver: RedisCheckpointSaver,
    thread_id: str,
    parent: RunnableConfig | None,
    step: int,
    *,
    run_id: str | None = None,
    configurable: dict[str, Any] | None = None,
) -> RunnableConfig:
    """One conversation turn: a checkpoint plus one task's pending write."""
    config = generate_config(thread_id)
    if parent is not None:
        config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
    config["configurable"].update(configurable or {})
    checkpoint = generate_checkpoint(
        channel_values={"turn": step, "text": f"message {step} on {thread_id}"},
        channel_versions={"turn": step + 1, "text": step + 1},
    )
    extra = {"run_id": run_id} if run_id else {}
    stored = await saver.aput(
        config, checkpoint, generate_metadata(step=step, **extra), {"turn": step + 1}
    )
    await saver.aput_writes(
        {"configurable": {**config["configurable"], **stored["configurable"]}},
        [("reply", f"reply {step}")],
        task_id=f"task-{step}",
    )
    return stored


async def _all(saver: RedisCheckpointSaver, config: RunnableConfig | None) -> list[CheckpointTuple]:
    return [t async for t in saver.alist(config)]


# -- retention ------------------------------------------------------------------------------


@pytest.mark.usefixtures("clean")
async def test_every_key_has_a_ttl_and_writes_refresh_it(redis: Redis, keys: Keys) -> None:
    saver = RedisCheckpointSaver(redis=redis, keys=keys, ttl=timedelta(days=2))
    parent = await _turn(saver, "T1:C1:1700000000.000100", None, 0, run_id="run-1")
    await saver.aput(
        generate_config("T1:C1:1700000000.000100", checkpoint_ns="tools:abc"),
        generate_checkpoint(),
        generate_metadata(run_id="run-1"),
        {},
    )
    stored = await _prefix_keys(redis, keys)
    # namespace hash, run index, and per namespace idx/data/writes/widx/runs (root has all,
    # the subgraph namespace has no writes yet)
    assert len(stored) == 1 + 1 + 5 + 3
    for key in stored:
        assert 2 * DAY_MS - 60_000 < await redis.pttl(key) <= 2 * DAY_MS, key

    # Time passes (simulated by shortening every TTL), then the thread is used again.
    for key in stored:
        await redis.pexpire(key, 5_000)
    await _turn(saver, "T1:C1:1700000000.000100", parent, 1, run_id="run-1")
    root_keys = [k for k in stored if b"tools" not in k]
    for key in root_keys:
        assert await redis.pttl(key) > 2 * DAY_MS - 60_000, key


@pytest.mark.usefixtures("clean")
async def test_memory_ttl_override_applies_per_thread(redis: Redis, keys: Keys) -> None:
    saver = RedisCheckpointSaver(redis=redis, keys=keys)
    stored = await saver.aput(
        {"configurable": {"thread_id": "short", "checkpoint_ns": "", "memory_ttl_seconds": 3600}},
        generate_checkpoint(),
        generate_metadata(),
        {},
    )
    # put_writes from LangGraph does not carry the override: the namespace's TTL is reused.
    await saver.aput_writes(stored, [("reply", "hi")], task_id="t")
    await _turn(saver, "long", None, 0)

    for key in await _prefix_keys(redis, keys):
        pttl = await redis.pttl(key)
        if b"t=short" in key:
            assert 3_500_000 < pttl <= 3_600_000, key
        else:
            assert pttl > 6 * DAY_MS, key


async def test_bad_ttl_override_is_rejected(redis: Redis, keys: Keys) -> None:
    saver = RedisCheckpointSaver(redis=redis, keys=keys)
    config: RunnableConfig = {
        "configurable": {"thread_id": "t", "checkpoint_ns": "", "memory_ttl_seconds": 0}
    }
    with pytest.raises(ValueError, match="memory_ttl_seconds"):
        await saver.aput(config, generate_checkpoint(), generate_metadata(), {})


@pytest.mark.usefixtures("clean")
async def test_bound_keeps_only_the_newest_checkpoints(redis: Redis, keys: Keys) -> None:
    saver = RedisCheckpointSaver(redis=redis, keys=keys, max_checkpoints=5)
    configs: list[RunnableConfig] = []
    parent = None
    for step in range(12):
        parent = await _turn(saver, "t", parent, step, run_id="run-1")
        configs.append(parent)

    listed = await _all(saver, generate_config("t"))
    newest = [c["configurable"]["checkpoint_id"] for c in reversed(configs[-5:])]
    assert [t.checkpoint["id"] for t in listed] == newest
    assert listed[0].pending_writes == [("task-11", "reply", "reply 11")]
    for old in configs[:-5]:
        assert await saver.aget_tuple(old) is None
    # Pruned checkpoints take their writes and run-index entries with them.
    base = f"{keys.prefix}:cp:t=t:n=:"
    assert await redis.hlen(base + "writes") == 5
    assert await redis.zcard(base + "widx") == 5
    assert await redis.scard(f"{keys.prefix}:cp:run:run-1") == 5


def test_constructor_rejects_nonsense() -> None:
    redis = create_redis(None)
    with pytest.raises(ValueError, match="max_checkpoints"):
        RedisCheckpointSaver(redis=redis, keys=Keys("x"), max_checkpoints=0)
    with pytest.raises(ValueError, match="ttl"):
        RedisCheckpointSaver(redis=redis, keys=Keys("x"), ttl=timedelta(0))


# -- round trips ----------------------------------------------------------------------------


class _CountingMixin:
    """Counts commands sent to the server (a pipeline or EVALSHA is one)."""

    commands: list[str]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]))
        return await super().execute_command(*args, **options)  # type: ignore[misc]


class _CountingRedis(_CountingMixin, Redis):  # type: ignore[misc]
    pass


class _CountingFakeRedis(_CountingMixin, fakeredis.FakeAsyncRedis):  # type: ignore[misc]
    pass


@pytest.fixture(params=["fakeredis", pytest.param("redis", marks=pytest.mark.redis)])
async def counting_redis(request: pytest.FixtureRequest) -> AsyncIterator[_CountingMixin]:
    client: Any
    if request.param == "fakeredis":
        client = _CountingFakeRedis(server=fakeredis.FakeServer())
    else:
        client = _CountingRedis.from_url(TEST_REDIS_URL)
        client.commands = []
        try:
            await client.ping()
        except Exception as exc:
            await client.aclose()
            _unavailable("Redis", f"{TEST_REDIS_URL}: {type(exc).__name__}")
    client.commands = []
    try:
        yield client
    finally:
        await client.aclose()


async def test_round_trips_do_not_grow_with_thread_length(counting_redis: Any, keys: Keys) -> None:
    saver = RedisCheckpointSaver(redis=counting_redis, keys=keys)

    async def one_turn_cost(thread_id: str, parent: RunnableConfig | None, step: int) -> int:
        counting_redis.commands.clear()
        await saver.aget_tuple(generate_config(thread_id))
        await _turn(saver, thread_id, parent, step)
        return len(counting_redis.commands)

    await one_turn_cost("warm-up", None, 0)  # loads the scripts (NOSCRIPT -> SCRIPT LOAD)
    short = await one_turn_cost("short", None, 0)
    parent = None
    for step in range(199):
        parent = await _turn(saver, "long", parent, step)
    long = await one_turn_cost("long", parent, 199)
    assert short == long == 3  # get, put, put_writes: one EVALSHA each
    assert set(counting_redis.commands) == {"EVALSHA"}
    try:
        await saver.adelete_thread("short")
        await saver.adelete_thread("long")
        await saver.adelete_thread("warm-up")
    finally:
        assert not [k async for k in counting_redis.scan_iter(match=f"{keys.prefix}:*")]


async def test_a_turn_reads_its_checkpoint_once(counting_redis: Any, keys: Keys) -> None:
    """The runtime asks for a paused run (``aget_state``) and then runs the graph, which
    loads the same checkpoint: inside ``reading_once`` that is one round trip, not two."""
    saver = RedisCheckpointSaver(redis=counting_redis, keys=keys)
    graph = _echo_graph(saver)
    thread = {"configurable": {"thread_id": f"once-{uuid4()}"}}
    await graph.ainvoke({"messages": [HumanMessage("first")]}, thread)  # scripts loaded

    async def turn(text: str, *, once: bool) -> tuple[int, str]:
        counting_redis.commands.clear()
        if once:
            with reading_once():
                await graph.aget_state(thread)
                result = await graph.ainvoke({"messages": [HumanMessage(text)]}, thread)
        else:
            await graph.aget_state(thread)
            result = await graph.ainvoke({"messages": [HumanMessage(text)]}, thread)
        return len(counting_redis.commands), result["messages"][-1].content

    twice, _ = await turn("second", once=False)
    once, answer = await turn("third", once=True)
    assert once == twice - 1
    assert answer == "heard so far: first | second | third"  # nothing stale was served
    await saver.adelete_thread(thread["configurable"]["thread_id"])


async def test_reading_once_serves_copies_and_forgets_on_write(redis: Redis, keys: Keys) -> None:
    saver = RedisCheckpointSaver(redis=redis, keys=keys)
    thread_id = f"memo-{uuid4()}"
    first = await _turn(saver, thread_id, None, 0)
    with reading_once():
        read = await saver.aget_tuple(generate_config(thread_id))
        assert read is not None
        read.checkpoint["channel_values"]["turn"] = "changed by the caller"
        again = await saver.aget_tuple(generate_config(thread_id))
        assert again is not None and again.checkpoint["channel_values"]["turn"] == 0
        await _turn(saver, thread_id, first, 1)  # a write: what was read is forgotten
        latest = await saver.aget_tuple(generate_config(thread_id))
        assert latest is not None and latest.checkpoint["channel_values"]["turn"] == 1
    await saver.adelete_thread(thread_id)
    assert await saver.aget_tuple(generate_config(thread_id)) is None


# -- isolation and concurrency --------------------------------------------------------------


@pytest.mark.usefixtures("clean")
async def test_concurrent_writers_on_different_threads_do_not_interfere(
    redis: Redis, keys: Keys
) -> None:
    saver = RedisCheckpointSaver(redis=redis, keys=keys, max_checkpoints=50)

    async def converse(thread_id: str) -> list[str]:
        parent = None
        ids = []
        for step in range(8):
            parent = await _turn(saver, thread_id, parent, step, run_id=f"run-{thread_id}")
            ids.append(parent["configurable"]["checkpoint_id"])
            await asyncio.sleep(0)
        return ids

    threads = [f"T1:C{n}:1700000000.{n:06}" for n in range(40)]
    written = await asyncio.gather(*(converse(t) for t in threads))

    for thread_id, ids in zip(threads, written, strict=True):
        listed = await _all(saver, generate_config(thread_id))
        assert [t.checkpoint["id"] for t in listed] == ids[::-1]
        assert {t.config["configurable"]["thread_id"] for t in listed} == {thread_id}
        latest = listed[0]
        assert latest.checkpoint["channel_values"]["text"] == f"message 7 on {thread_id}"
        assert latest.pending_writes == [("task-7", "reply", "reply 7")]
        assert latest.metadata.get("run_id") == f"run-{thread_id}"


@pytest.mark.usefixtures("clean")
async def test_thread_ids_with_separators_do_not_alias(redis: Redis, keys: Keys) -> None:
    saver = RedisCheckpointSaver(redis=redis, keys=keys)
    await _turn(saver, "T1:C1", None, 0)
    await _turn(saver, "T1:C1:n=", None, 1)
    await _turn(saver, "T1%3AC1", None, 2)
    await saver.adelete_thread("T1:C1")

    assert await saver.aget_tuple(generate_config("T1:C1")) is None
    for thread_id, step in (("T1:C1:n=", 1), ("T1%3AC1", 2)):
        tup = await saver.aget_tuple(generate_config(thread_id))
        assert tup is not None and tup.checkpoint["channel_values"]["turn"] == step


@pytest.mark.usefixtures("clean")
async def test_listing_without_namespace_covers_every_namespace(redis: Redis, keys: Keys) -> None:
    saver = RedisCheckpointSaver(redis=redis, keys=keys)
    for ns in ("", "agent:1", "agent:2"):
        await saver.aput(
            generate_config("t", checkpoint_ns=ns), generate_checkpoint(), generate_metadata(), {}
        )
    listed = await _all(saver, {"configurable": {"thread_id": "t"}})
    assert sorted(t.config["configurable"]["checkpoint_ns"] for t in listed) == [
        "",
        "agent:1",
        "agent:2",
    ]
    assert len([t async for t in saver.alist({"configurable": {"thread_id": "t"}}, limit=2)]) == 2
    with pytest.raises(ValueError, match="thread_id"):
        await _all(saver, None)


@pytest.mark.usefixtures("clean")
async def test_pending_writes_come_back_in_task_path_order(redis: Redis, keys: Keys) -> None:
    saver = RedisCheckpointSaver(redis=redis, keys=keys)
    stored = await saver.aput(generate_config("t"), generate_checkpoint(), generate_metadata(), {})
    await saver.aput_writes(stored, [("ch", "second")], task_id="a", task_path="~2")
    await saver.aput_writes(stored, [("ch", "first"), ("ch", "also first")], "z", "~1")
    tup = await saver.aget_tuple(stored)
    assert tup is not None
    assert [w[2] for w in tup.pending_writes or []] == ["first", "also first", "second"]


@pytest.mark.usefixtures("clean")
async def test_special_channels_overwrite_and_others_keep_their_first_value(
    redis: Redis, keys: Keys
) -> None:
    saver = RedisCheckpointSaver(redis=redis, keys=keys)
    stored = await saver.aput(generate_config("t"), generate_checkpoint(), generate_metadata(), {})
    await saver.aput_writes(stored, [("a", 1), (ERROR, "boom 1"), ("b", 2)], task_id="task")
    await saver.aput_writes(stored, [("a", 10), (ERROR, "boom 2"), ("b", 20)], task_id="task")
    tup = await saver.aget_tuple(stored)
    assert tup is not None
    assert sorted(tup.pending_writes or []) == [
        ("task", ERROR, "boom 2"),  # the error channel: the latest value wins
        ("task", "a", 1),  # ordinary channels: a retried task does not overwrite
        ("task", "b", 2),
    ]


@pytest.mark.usefixtures("clean")
async def test_checkpoint_ids_with_separators_round_trip(redis: Redis, keys: Keys) -> None:
    saver = RedisCheckpointSaver(redis=redis, keys=keys)
    odd_id = "12:34:\x00:5"  # digits and ':' cannot confuse the reply framing
    stored = await saver.aput(
        generate_config("t"), generate_checkpoint(checkpoint_id=odd_id), generate_metadata(), {}
    )
    await saver.aput_writes(stored, [("ch", "7:x")], task_id="1:2")
    for found in (
        await saver.aget_tuple(generate_config("t")),
        await saver.aget_tuple(stored),
        *[t async for t in saver.alist(stored)],
    ):
        assert found is not None
        assert found.checkpoint["id"] == odd_id
        assert found.pending_writes == [("1:2", "ch", "7:x")]


async def test_scripts_are_reloaded_after_the_server_forgets_them(keys: Keys) -> None:
    # A private server: flushing the script cache of the shared real Redis would disturb
    # other clients (they would recover the same way, but it is not this test's business).
    redis = create_redis(None)
    saver = RedisCheckpointSaver(redis=redis, keys=keys)
    try:
        stored = await _turn(saver, "t", None, 0)
        await redis.script_flush()
        tup = await saver.aget_tuple(generate_config("t"))
        assert tup is not None and tup.config == stored
        await _turn(saver, "t", stored, 1)
    finally:
        await redis.aclose()


@pytest.mark.usefixtures("clean")
async def test_copy_is_independent_of_its_source(redis: Redis, keys: Keys) -> None:
    saver = RedisCheckpointSaver(redis=redis, keys=keys)
    parent = await _turn(saver, "src", None, 0)
    await _turn(saver, "src", parent, 1)
    await saver.acopy_thread("src", "dst")
    await saver.adelete_thread("src")
    copied = await _all(saver, generate_config("dst"))
    assert [t.metadata["step"] for t in copied] == [1, 0]
    assert copied[0].pending_writes == [("task-1", "reply", "reply 1")]
    assert copied[0].parent_config is not None
    assert copied[0].parent_config["configurable"]["thread_id"] == "dst"


@pytest.mark.usefixtures("clean")
async def test_delete_thread_leaves_no_keys_behind(redis: Redis, keys: Keys) -> None:
    saver = RedisCheckpointSaver(redis=redis, keys=keys)
    parent = await _turn(saver, "t", None, 0, run_id="run-1")
    await _turn(saver, "t", parent, 1, run_id="run-2")
    # writes for a subgraph namespace that has no checkpoint yet
    subgraph = generate_config("t", checkpoint_ns="tools:1", checkpoint_id="x")
    await saver.aput_writes(subgraph, [("ch", 1)], task_id="task")
    await _turn(saver, "kept", None, 0, run_id="run-3")

    await saver.adelete_thread("t")
    remaining = await _prefix_keys(redis, keys)
    assert remaining and all(b"t=kept" in k or b"run:run-3" in k for k in remaining)
    await saver.adelete_for_runs(["run-3"])
    assert await _prefix_keys(redis, keys) == [f"{keys.prefix}:cp:t=kept:ns".encode()]
    assert await saver.aget_tuple(generate_config("kept")) is None


# -- failures -------------------------------------------------------------------------------


async def test_lost_connection_surfaces_as_redis_unavailable(keys: Keys) -> None:
    dead = create_redis("redis://127.0.0.1:1/0", retries=0, socket_timeout=0.5)
    saver = RedisCheckpointSaver(redis=dead, keys=keys)
    try:
        with pytest.raises(RedisUnavailable, match="checkpoint get"):
            await saver.aget_tuple(generate_config("t"))
        with pytest.raises(RedisUnavailable, match="checkpoint put"):
            await saver.aput(generate_config("t"), generate_checkpoint(), generate_metadata(), {})
    finally:
        await dead.aclose()


def test_sync_methods_point_to_the_async_ones(keys: Keys) -> None:
    saver = RedisCheckpointSaver(redis=create_redis(None), keys=keys)
    with pytest.raises(NotImplementedError, match=r"aget_tuple\(\)"):
        saver.get_tuple(generate_config("t"))
    with pytest.raises(NotImplementedError, match=r"aput\(\)"):
        saver.put(generate_config("t"), generate_checkpoint(), generate_metadata(), {})


# -- a real graph ---------------------------------------------------------------------------


class _Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def _echo_graph(saver: RedisCheckpointSaver) -> Any:
    def reply(state: _Chat) -> dict[str, list[AnyMessage]]:
        said = [m.content for m in state["messages"] if isinstance(m, HumanMessage)]
        return {"messages": [AIMessage(content=f"heard so far: {' | '.join(map(str, said))}")]}

    builder = StateGraph(_Chat)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    return builder.compile(checkpointer=saver)


@pytest.mark.usefixtures("clean")
async def test_graph_remembers_across_turns_and_restarts(redis: Redis, keys: Keys) -> None:
    thread = {"configurable": {"thread_id": f"T1:C1:{uuid4()}", "memory_ttl_seconds": 7200}}
    graph = _echo_graph(RedisCheckpointSaver(redis=redis, keys=keys))
    await graph.ainvoke({"messages": [HumanMessage("my order is 1234")]}, thread)
    second = await graph.ainvoke({"messages": [HumanMessage("refund it")]}, thread)
    assert second["messages"][-1].content == "heard so far: my order is 1234 | refund it"

    # A new process: a fresh saver and graph over the same Redis.
    restarted = _echo_graph(RedisCheckpointSaver(redis=redis, keys=keys))
    third = await restarted.ainvoke({"messages": [HumanMessage("thanks")]}, thread)
    assert len(third["messages"]) == 6
    assert third["messages"][-1].content == "heard so far: my order is 1234 | refund it | thanks"

    other = await restarted.ainvoke(
        {"messages": [HumanMessage("hello")]}, {"configurable": {"thread_id": "other"}}
    )
    assert other["messages"][-1].content == "heard so far: hello"

    # The skill's memory TTL reached the saver through the graph's config.
    thread_keys = [k for k in await _prefix_keys(redis, keys) if b"t=T1%3AC1" in k]
    assert {k.rsplit(b":", 1)[1] for k in thread_keys} >= {b"ns", b"idx", b"data", b"writes"}
    for key in thread_keys:
        assert 7_000_000 < await redis.pttl(key) <= 7_200_000, key

    history = [s async for s in restarted.aget_state_history(thread)]
    assert len(history) == 9  # per turn: the input checkpoint and two loop steps
