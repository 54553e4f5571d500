"""An answer Slack will not take yet is posted when it may: never dropped.

A worker's client waits out a few 429s; past that budget (or for a ``Retry-After`` above
its cap) the post fails with ``ratelimited``. The answer used to be lost there, leaving
the thread's "Working on it…" placeholder for good; now the calls not yet made go on the
run queue as a delayed ``slack.deliver`` job (bot.delivery). Through the app, on both
backends, and the helper that makes the calls against the fake Web API.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.delivery import (
    DELIVER_KIND,
    DROPPED_TEXT,
    FIRST_MESSAGE,
    POST_EVENT,
    REST_DROPPED_TEXT,
    Deliveries,
    SlackCall,
    Undelivered,
    error_code,
    http_status,
    send,
)
from bot.metrics import Metrics
from bot.queueing import PayloadSealer
from bot.slack.client import create_web_client
from bot.views.runs import WORKING_TEXT
from storage.runqueue import JobInfo
from tests.bot.conftest import BotFactory
from tests.fakes.chat import ScriptedChatModel
from tests.fakes.slack_api import FakeSlackApi, slack_api_server


async def test_an_answer_slack_refuses_for_now_is_posted_later_once(make_bot: BotFactory) -> None:
    env = await make_bot({"offline": ScriptedChatModel([], default="The answer.")})
    # One call and all three of its retries refused: the client gives up with ratelimited.
    env.slack.fail_next("chat.update", status=429, retry_after=1, times=4)
    _, ts = await env.mention("ask hi")
    await env.idle(timeout=30)
    texts = [m["text"] for m in env.replies("C0GENERAL", ts)]
    statuses = [c.status for c in env.slack.calls("chat.update")]
    print(f"\nthread: {texts}; chat.update answered {statuses}")
    assert texts == ["The answer."]  # the placeholder, replaced; no apology beside it
    assert statuses == [429, 429, 429, 429, 200]
    assert WORKING_TEXT not in texts


@pytest.mark.parametrize("fault", [{"status": 502, "done": True}, {"status": 502}])
async def test_a_placeholder_whose_answer_was_lost_is_posted_once(
    make_bot: BotFactory, fault: dict[str, Any]
) -> None:
    """The "Working on it…" post meets a 502: after Slack posted it, or before. The
    client used to retry it, and a placeholder Slack had posted stayed in the thread for
    good beside the answer; now it is looked for, and posted again only if missing."""
    env = await make_bot({"offline": ScriptedChatModel([], default="The answer.")})
    env.slack.fail_next("chat.postMessage", **fault)
    _, ts = await env.mention("ask hi")
    await env.idle(timeout=30)
    texts = [m["text"] for m in env.replies("C0GENERAL", ts)]
    looked = len(env.slack.calls("conversations.replies"))
    print(f"\n{fault}: thread {texts}; looked {looked} time(s)")
    assert texts == ["The answer."]
    assert looked == 1  # not posted again blindly: looked for first
    assert WORKING_TEXT not in texts


async def test_a_placeholder_slack_keeps_dropping_leaves_the_answer_its_own_post(
    make_bot: BotFactory,
) -> None:
    """Every "Working on it…" post loses its connection, and no look finds one: the turn
    goes on without a placeholder (it used to be lost with the dropped connections), and
    the answer is posted as a message of its own."""
    env = await make_bot({"offline": ScriptedChatModel([], default="The answer.")})
    env.slack.fail_next("chat.postMessage", drop=True, times=3)
    _, ts = await env.mention("ask hi")
    await env.idle(timeout=30)
    texts = [m["text"] for m in env.replies("C0GENERAL", ts)]
    print(f"\nthread: {texts}; looked {len(env.slack.calls('conversations.replies'))} time(s)")
    assert texts == ["The answer."]


@dataclass
class _Thread:
    """A thread on the fake Web API with a placeholder, and the two calls of a two-chunk
    answer into it (the placeholder's update, then a second message)."""

    slack: FakeSlackApi
    client: AsyncWebClient
    root: str
    calls: list[SlackCall]


@pytest.fixture
async def thread() -> AsyncIterator[_Thread]:
    with slack_api_server() as slack:
        slack.add_user("U1", "alice")
        slack.add_channel("C1", "general", members=["U1"])
        client = create_web_client(token=slack.token, base_url=slack.base_url, max_retries=0)
        root = (await client.chat_postMessage(channel="C1", text="root"))["ts"]
        placeholder = (await client.chat_postMessage(channel="C1", text="…", thread_ts=root))["ts"]
        calls = [
            SlackCall("chat.update", {"channel": "C1", "ts": placeholder, "text": "part 1"}),
            SlackCall("chat.postMessage", {"channel": "C1", "thread_ts": root, "text": "part 2"}),
        ]
        yield _Thread(slack=slack, client=client, root=root, calls=calls)


async def test_send_stops_at_the_limited_call_and_keeps_the_rest(thread: _Thread) -> None:
    slack, client, root, calls = thread.slack, thread.client, thread.root, thread.calls
    slack.fail_next("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(Undelivered) as raised:
        await send(client, calls)
    [rest] = raised.value.calls
    assert rest.method == "chat.postMessage" and raised.value.wait == 7.0
    assert {k: v for k, v in rest.args.items() if k != "metadata"} == calls[1].args
    assert rest.args["metadata"]["event_type"] == POST_EVENT  # its key, kept for later
    await send(client, raised.value.calls)
    assert [m["text"] for m in slack.messages("C1", root)] == ["root", "part 1", "part 2"]
    # Any other error is not a rate limit: it is raised as it is.
    slack.fail_next("chat.postMessage", status=200, error="channel_not_found")
    with pytest.raises(SlackApiError):
        await send(client, calls[1:])


async def test_a_top_level_answer_limited_after_its_first_chunk_keeps_its_thread(
    thread: _Thread,
) -> None:
    """A scheduled firing's answer goes to the channel's top level, its later chunks in the
    first one's thread (:data:`FIRST_MESSAGE`): the calls handed back after the first was
    made name that thread, so they land in it however much later they are made."""
    slack, client = thread.slack, thread.client
    calls = [
        SlackCall("chat.postMessage", {"channel": "C1", "text": "part 1"}),
        SlackCall("chat.postMessage", {"channel": "C1", "thread_ts": FIRST_MESSAGE, "text": "2"}),
        SlackCall("chat.postMessage", {"channel": "C1", "thread_ts": FIRST_MESSAGE, "text": "3"}),
    ]
    slack.rate_limit("chat.postMessage", limit=1, per=60)  # the first one goes through
    with pytest.raises(Undelivered) as raised:
        await send(client, calls)
    slack.rate_limit("chat.postMessage", limit=0)
    first = next(m for m in slack.messages("C1") if m["text"] == "part 1")
    assert [c.args["thread_ts"] for c in raised.value.calls] == [first["ts"], first["ts"]]
    assert await send(client, raised.value.calls) is not None
    assert [m["text"] for m in slack.messages("C1", first["ts"])] == ["part 1", "2", "3"]


class _RecordingQueue:
    """Stands in for the run queue: records what would be deferred."""

    def __init__(self) -> None:
        self.deferred: list[tuple[str, dict[str, object], dict[str, object]]] = []

    async def defer(self, kind: str, payload: dict[str, object], **options: object) -> int:
        self.deferred.append((kind, dict(payload), options))
        return len(self.deferred)


def _job() -> JobInfo:
    return JobInfo(id=1, attempt=0, final_attempt=False)


async def test_a_delivery_limited_again_queues_only_the_calls_not_made(thread: _Thread) -> None:
    slack, root, calls = thread.slack, thread.root, thread.calls
    placeholder = str(calls[0].args["ts"])
    sealer = PayloadSealer(key=b"k" * 32)
    queue = _RecordingQueue()
    deliveries = Deliveries(queue=queue, client=thread.client, sealer=sealer)  # type: ignore[arg-type]
    await deliveries.later(
        Undelivered(calls, 3), thread="T:C1:1", channel="C1", placeholder_ts=placeholder
    )
    kind, payload, options = queue.deferred[0]
    assert kind == DELIVER_KIND and options["priority"] == 0
    assert "part 1" not in json.dumps(payload)  # the answer is stored sealed

    slack.fail_next("chat.postMessage", status=429, retry_after=4)
    await deliveries.handle(payload, _job())
    _, again, options = queue.deferred[1]
    assert again["attempt"] == 1 and options["priority"] == 1  # ahead of later ones
    sealed = sealer.unseal(str(again["calls"]))
    assert sealed is not None
    assert [c["method"] for c in json.loads(sealed)] == ["chat.postMessage"]
    await deliveries.handle(again, _job())
    assert [m["text"] for m in slack.messages("C1", root)] == ["root", "part 1", "part 2"]
    assert len(slack.calls("chat.update")) == 1  # part 1 was never made twice

    # Refused to the last attempt: the placeholder says so instead of "Working on it…".
    slack.fail_next("chat.update", status=429, retry_after=1)
    last = dict(payload, attempt=deliveries.max_attempts - 1)
    await deliveries.handle(last, _job())
    assert len(queue.deferred) == 2
    assert slack.messages("C1", root)[1]["text"] == DROPPED_TEXT


async def test_dropping_the_rest_of_an_answer_keeps_its_start(thread: _Thread) -> None:
    """The placeholder already holds part 1 and only part 2 is refused to the last attempt:
    part 1 stays, and the thread says the answer was cut short."""
    slack, root, calls = thread.slack, thread.root, thread.calls
    queue = _RecordingQueue()
    deliveries = Deliveries(queue=queue, client=thread.client, sealer=PayloadSealer(key=b"k" * 32))  # type: ignore[arg-type]
    placeholder = str(calls[0].args["ts"])
    await deliveries.later(
        Undelivered(calls, 3), thread="T:C1:1", channel="C1", placeholder_ts=placeholder
    )
    _, payload, _ = queue.deferred[0]
    slack.fail_next("chat.postMessage", status=429, retry_after=4)
    await deliveries.handle(dict(payload, attempt=deliveries.max_attempts - 1), _job())
    texts = [m["text"] for m in slack.messages("C1", root)]
    assert texts == ["root", "part 1", REST_DROPPED_TEXT]
    assert len(queue.deferred) == 1  # nothing queued again


async def test_slack_errors_in_a_deferred_delivery_requeue_or_say_so(thread: _Thread) -> None:
    """A 5xx or an unreachable Slack is not the end (queued again, counted as what it was,
    not as a rate limit); an error that will not pass (the channel is gone) says so in the
    placeholder instead of leaving "Working on it…" for good."""
    slack, root, calls = thread.slack, thread.root, thread.calls
    metrics = Metrics()
    queue = _RecordingQueue()
    deliveries = Deliveries(
        queue=queue,  # type: ignore[arg-type]
        client=thread.client,
        sealer=PayloadSealer(key=b"k" * 32),
        metrics=metrics,
    )
    placeholder = str(calls[0].args["ts"])
    await deliveries.later(
        Undelivered(calls, 3), thread="T:C1:1", channel="C1", placeholder_ts=placeholder
    )
    _, payload, _ = queue.deferred[0]
    slack.fail_next("chat.update", status=503, error="service_unavailable")
    await deliveries.handle(payload, _job())
    slack.fail_next("chat.update", drop=True)
    await deliveries.handle(payload, _job())
    assert len(queue.deferred) == 3  # queued again, twice

    def counted(error: str) -> float:
        labels = {"method": "chat.update", "error": error}
        return metrics.registry.get_sample_value("switchboard_slack_api_errors_total", labels) or 0

    print(f"\ncounted: {[(e, counted(e)) for e in ('ratelimited', 'server_error', 'unreachable')]}")
    assert (counted("ratelimited"), counted("server_error"), counted("unreachable")) == (1, 1, 1)

    slack.fail_next("chat.update", status=200, error="channel_not_found")
    await deliveries.handle(payload, _job())
    assert len(queue.deferred) == 3
    assert slack.messages("C1", root)[1]["text"] == DROPPED_TEXT


def _deliveries(thread: _Thread) -> tuple[Deliveries, _RecordingQueue]:
    queue = _RecordingQueue()
    sealer = PayloadSealer(key=b"k" * 32)
    return Deliveries(queue=queue, client=thread.client, sealer=sealer), queue  # type: ignore[arg-type]


def _texts(thread: _Thread, ts: str | None = None) -> list[str]:
    return [m["text"] for m in thread.slack.messages("C1", ts or thread.root)]


async def test_a_lasting_error_after_the_start_keeps_the_start(thread: _Thread) -> None:
    """The placeholder's update is made in the job, then Slack refuses part 2 for good:
    part 1 stays, the thread says the rest is missing."""
    deliveries, queue = _deliveries(thread)
    placeholder = str(thread.calls[0].args["ts"])
    await deliveries.later(
        Undelivered(thread.calls, 1), thread="T", channel="C1", placeholder_ts=placeholder
    )
    thread.slack.fail_next("chat.postMessage", status=200, error="restricted_action")
    await deliveries.handle(queue.deferred[0][1], _job())
    assert _texts(thread) == ["root", "part 1", REST_DROPPED_TEXT]


async def test_a_job_stored_by_the_previous_version_keeps_a_posted_start(thread: _Thread) -> None:
    """A job queued before ``started`` was stored kept ``placeholder_ts`` after the update
    was made; dropped, it must not overwrite part 1 with the apology."""
    deliveries, _ = _deliveries(thread)
    placeholder = str(thread.calls[0].args["ts"])
    await thread.client.chat_update(channel="C1", ts=placeholder, text="part 1")
    sealed = PayloadSealer(key=b"k" * 32).seal(
        json.dumps([{"method": c.method, "args": dict(c.args)} for c in thread.calls[1:]])
    )
    old = {"thread": "T", "attempt": deliveries.max_attempts - 1, "channel": "C1"}
    old |= {"placeholder_ts": placeholder, "calls": sealed}
    thread.slack.fail_next("chat.postMessage", status=429, retry_after=3)
    await deliveries.handle(old, _job())
    assert _texts(thread) == ["root", "part 1", REST_DROPPED_TEXT]


async def test_answers_without_a_placeholder_are_cut_short_where_they_started(
    thread: _Thread,
) -> None:
    """A scheduled firing's top-level answer (its rest in the first message's thread) and
    an approval's answer (all posts into the thread): part 1 made, the rest refused to the
    last attempt. Part 1 stays and its thread says the rest is missing."""
    deliveries, queue = _deliveries(thread)
    top_level = [
        SlackCall("chat.postMessage", {"channel": "C1", "text": "digest 1"}),
        SlackCall("chat.postMessage", {"channel": "C1", "thread_ts": FIRST_MESSAGE, "text": "2"}),
    ]
    await deliveries.later(Undelivered(top_level, 1), thread="C", channel="C1", placeholder_ts=None)
    thread.slack.fail_next("chat.postMessage", status=429, retry_after=2, after=1)
    await deliveries.handle(dict(queue.deferred[0][1], attempt=19), _job())
    first = next(m for m in thread.slack.messages("C1") if m["text"] == "digest 1")
    assert _texts(thread, first["ts"]) == ["digest 1", REST_DROPPED_TEXT]

    in_thread = [
        SlackCall("chat.postMessage", {"channel": "C1", "thread_ts": thread.root, "text": "a"}),
        SlackCall("chat.postMessage", {"channel": "C1", "thread_ts": thread.root, "text": "b"}),
    ]
    thread.slack.fail_next("chat.postMessage", status=429, retry_after=2, after=1)
    with pytest.raises(Undelivered) as raised:
        await send(thread.client, in_thread)
    assert raised.value.made == 1
    await deliveries.later(raised.value, thread="T", channel="C1", placeholder_ts=None)
    thread.slack.fail_next("chat.postMessage", status=429, retry_after=2)
    await deliveries.handle(dict(queue.deferred[-1][1], attempt=19), _job())
    assert _texts(thread)[-2:] == ["a", REST_DROPPED_TEXT]


async def test_an_answer_dropped_where_nobody_saw_it_is_still_told(thread: _Thread) -> None:
    """Nothing of a scheduled answer was posted (no placeholder, no thread): its owner is
    told in their DM, with the text the scheduler wrote. A DM's answer is cut short on the
    DM's top level (its further chunks have no thread to go in)."""
    deliveries, queue = _deliveries(thread)
    digest = [SlackCall("chat.postMessage", {"channel": "C1", "text": "digest"})]
    await deliveries.later(
        Undelivered(digest, 1),
        thread="channel:C1",
        channel="C1",
        placeholder_ts=None,
        tell=("U1", "Your schedule's answer could not be posted."),
    )
    _, payload, _ = queue.deferred[0]
    assert "could not be posted" not in json.dumps(payload)  # sealed, like the answer
    thread.slack.fail_next("chat.postMessage", status=429, retry_after=2)
    await deliveries.handle(payload, _job())  # limited again: the owner is told later
    assert "tell" in queue.deferred[1][1]
    thread.slack.fail_next("chat.postMessage", status=200, error="not_in_channel")
    await deliveries.handle(queue.deferred[1][1], _job())
    dm = thread.slack.add_im("U1")["id"]
    told = [m["text"] for m in thread.slack.messages(dm)]
    print(f"\nthe owner's DM: {told}")
    assert told == ["Your schedule's answer could not be posted."]
    assert "digest" not in [m["text"] for m in thread.slack.messages("C1")]

    im = dm  # a DM answer: its placeholder holds part 1, part 2 goes on the top level
    asked = (await thread.client.chat_postMessage(channel=im, text="…"))["ts"]
    in_dm = [
        SlackCall("chat.update", {"channel": im, "ts": asked, "text": "part 1"}),
        SlackCall("chat.postMessage", {"channel": im, "text": "part 2"}),
    ]
    await deliveries.later(Undelivered(in_dm, 1), thread="D", channel=im, placeholder_ts=asked)
    thread.slack.fail_next("chat.postMessage", status=200, error="restricted_action")
    await deliveries.handle(queue.deferred[-1][1], _job())
    texts = [m["text"] for m in thread.slack.messages(im)]
    assert texts[-2:] == ["part 1", REST_DROPPED_TEXT]


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 502, "done": True},  # a gateway's 502 after Slack posted it
        {"drop": True, "done": True},  # the connection closed after Slack posted it
        {"status": 504},  # a 504 before Slack did anything
    ],
    ids=["502-posted", "dropped-posted", "504-not-posted"],
)
async def test_a_post_whose_answer_was_lost_is_looked_for_not_made_twice(
    thread: _Thread, fault: dict[str, Any]
) -> None:
    """Slack may have posted a message whose answer was lost. The client retries neither
    (it used to, and posted "part 2" twice); the post is queued with ``check``, and the
    job posts it only if no message in the thread has its key."""
    slack, root, calls = thread.slack, thread.root, thread.calls
    client = create_web_client(token=slack.token, base_url=slack.base_url, backoff=0.01)
    slack.fail_next("chat.postMessage", **fault)
    deliveries, queue = _deliveries(thread)
    placeholder = str(calls[0].args["ts"])
    lost: Undelivered | None = None
    try:
        await send(client, calls)
    except Undelivered as exc:
        lost = exc
    if lost is not None:  # without the fix, the client made the post again itself
        assert lost.check and lost.made == 1
        await deliveries.later(lost, thread="T", channel="C1", placeholder_ts=placeholder)
        await deliveries.handle(queue.deferred[0][1], _job())
    texts = _texts(thread)
    looked = [c.args.get("include_all_metadata") for c in slack.calls("conversations.replies")]
    print(f"\n{fault}: thread {texts}; conversations.replies {looked}")
    assert texts == ["root", "part 1", "part 2"]
    assert looked == ["1"]  # include_all_metadata, as slack_sdk sends True
    # Slack lists a message's metadata only when asked for it.
    listed = await client.conversations_replies(channel="C1", ts=root)
    assert all("metadata" not in m for m in listed["messages"])


async def test_a_post_looked_for_is_looked_for_again_when_the_look_is_refused(
    thread: _Thread,
) -> None:
    """The look itself is rate limited: the post is neither made blindly nor dropped, but
    queued again, still to be looked for."""
    slack, calls = thread.slack, thread.calls
    slack.fail_next("chat.postMessage", status=502, done=True)
    with pytest.raises(Undelivered) as raised:
        await send(thread.client, calls[1:])
    deliveries, queue = _deliveries(thread)
    await deliveries.later(raised.value, thread="T", channel="C1", placeholder_ts=None)
    slack.fail_next("conversations.replies", status=429, retry_after=3)
    await deliveries.handle(queue.deferred[0][1], _job())
    again = queue.deferred[1][1]
    assert again["look"] == 1 and again["attempt"] == 1
    await deliveries.handle(again, _job())
    assert _texts(thread) == ["root", "…", "part 2"]


async def test_a_delivery_run_again_looks_for_every_post_it_may_have_made(
    thread: _Thread,
) -> None:
    """The worker died after making both calls: the sweeper runs the job again (attempt
    1). The placeholder's update is made again (harmless); part 2 is found, not posted
    twice. On the last attempt a look that is refused no longer holds the post back."""
    slack, calls = thread.slack, thread.calls
    deliveries, queue = _deliveries(thread)
    placeholder = str(calls[0].args["ts"])
    await deliveries.later(
        Undelivered(calls, 1), thread="T", channel="C1", placeholder_ts=placeholder
    )
    payload = queue.deferred[0][1]
    await deliveries.handle(payload, _job())
    await deliveries.handle(payload, JobInfo(id=1, attempt=1, final_attempt=False))
    print(f"\nthread after a re-run: {_texts(thread)}")
    assert _texts(thread) == ["root", "part 1", "part 2"]
    # Run again and refused at its first call: the job it queues still looks for part 2.
    slack.fail_next("chat.update", status=429, retry_after=2)
    await deliveries.handle(payload, JobInfo(id=1, attempt=2, final_attempt=False))
    assert queue.deferred[-1][1]["look"] == 2
    await deliveries.handle(queue.deferred[-1][1], _job())
    assert _texts(thread) == ["root", "part 1", "part 2"]

    slack.fail_next("chat.postMessage", status=502)  # not posted: in doubt all the same
    with pytest.raises(Undelivered) as raised:
        await send(thread.client, [SlackCall("chat.postMessage", {"channel": "C1", "text": "x"})])
    await deliveries.later(raised.value, thread="C", channel="C1", placeholder_ts=None)
    slack.fail_next("conversations.history", status=429, retry_after=30)
    await deliveries.handle(dict(queue.deferred[-1][1], attempt=19), _job())
    assert [m["text"] for m in slack.messages("C1")][-1] == "x"  # rather twice than never


async def test_the_owner_is_told_later_when_slack_refuses_that_too(thread: _Thread) -> None:
    """The DM to the owner meets the same storm that dropped the answer: it is queued as
    a delivery of its own, not lost."""
    slack = thread.slack
    deliveries, queue = _deliveries(thread)
    digest = [SlackCall("chat.postMessage", {"channel": "C1", "text": "digest"})]
    await deliveries.later(
        Undelivered(digest, 1),
        thread="channel:C1",
        channel="C1",
        placeholder_ts=None,
        tell=("U1", "Not posted."),
    )
    slack.fail_next("chat.postMessage", status=200, error="not_in_channel")
    slack.fail_next("chat.postMessage", status=429, retry_after=5)
    await deliveries.handle(dict(queue.deferred[0][1]), _job())
    _, dm_job, options = queue.deferred[1]
    assert options["lock"] == "deliver:dm:U1" and "tell" not in dm_job
    await deliveries.handle(dm_job, _job())
    assert [m["text"] for m in slack.messages(slack.add_im("U1")["id"])] == ["Not posted."]


def test_the_status_of_a_refusal_without_a_json_body_is_read() -> None:
    """slack_sdk hands over aiohttp's own response when a body that says it is JSON is
    not (a proxy's 502 page): it has ``status``, not ``status_code`` or ``get``."""
    raw = SimpleNamespace(status=502)
    refused = SlackApiError("not json", raw)
    assert (http_status(refused), error_code(refused)) == (502, "http_502")
