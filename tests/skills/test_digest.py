"""The digest skill: its numbers on explicit data, and the whole graph on sample data."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from skills.access import ConversationReader
from skills.context import Actor, RunContext, SlackMessage, SlackReaderError, ThreadRef
from skills.digest import DIGEST_SKILL, build_digest_graph, parse_request
from skills.digest.stats import (
    busiest_hour,
    compute_stats,
    is_question,
    plain_text,
    top_posters,
    top_threads,
    unanswered_questions,
)
from skills.models import OfflineChatModel
from skills.sample import StaticSlackReader, WorkspaceChannel
from tests.fakes.chat import ScriptedChatModel, reply

NOW = datetime(2024, 5, 14, 14, 0, tzinfo=UTC)
LISBON = ZoneInfo("Europe/Lisbon")


def msg(
    minute: int,
    user: str,
    text: str,
    *,
    replies: int = 0,
    bot: bool = False,
    name: str | None = None,
) -> SlackMessage:
    """A message ``minute`` minutes after 12:00 UTC on NOW's day."""
    ts = (NOW.replace(hour=12) + timedelta(minutes=minute)).timestamp()
    return SlackMessage(
        ts=f"{ts:.6f}", user=user, text=text, user_name=name, reply_count=replies, bot=bot
    )


# --------------------------------------------------------------------------- stats


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Who owns the reconciliation cron?", True),
        ("is this expected ? ", True),
        ("See <https://grafana.example.com/d/abc?orgId=1|the dashboard>", False),
        ("See https://grafana.example.com/d/abc?orgId=1 for details", False),
        ("Run `curl 'https://x.test/?a=1'` and report back", False),
        ("<@U0DEV|dev> deploy done", False),
        ("<@U0DEV> can you check the payout batch?", True),
    ],
)
def test_is_question_ignores_question_marks_in_links_and_code(text: str, expected: bool) -> None:
    assert is_question(text) is expected


def test_unanswered_questions() -> None:
    no_replies = msg(0, "U1", "Anyone seen the FX job today?")
    self_replies = msg(1, "U1", "Is checkout slow for anyone?", replies=2)
    answered = msg(2, "U2", "Is this the retry bug?", replies=1)
    bot_question = msg(3, "U9", "Did you mean to silence this alert?", bot=True)
    statement = msg(4, "U3", "Deploy done.")
    unread_thread = msg(5, "U4", "Who owns the cron?", replies=3)
    replies = {
        self_replies.ts: [msg(6, "U1", "never mind"), msg(7, "U1", "it was the CDN")],
        answered.ts: [msg(8, "U3", "yes, refund one capture")],
    }
    messages = [no_replies, self_replies, answered, bot_question, statement, unread_thread]

    found = unanswered_questions(messages, replies)

    # a thread we did not read cannot be judged, so it counts as answered
    assert found == [no_replies, self_replies]


def test_top_threads_by_replies_ties_oldest_first() -> None:
    a = msg(0, "U1", "a", replies=2)
    b = msg(1, "U1", "b", replies=5)
    c = msg(2, "U1", "c", replies=2)
    d = msg(3, "U1", "d")
    e = msg(4, "U1", "e", replies=1)
    assert top_threads([a, b, c, d, e]) == [b, a, c]
    assert top_threads([d]) == []


def test_top_posters_count_humans_and_break_ties_by_name() -> None:
    names = {"U1": "Marta", "U2": "Dev", "U3": "Carol"}
    messages = [
        msg(0, "U1", "x"),
        msg(1, "U2", "x"),
        msg(2, "U1", "x"),
        msg(3, "U3", "x"),
        msg(4, "U2", "x"),
        msg(5, "U9", "alert", bot=True),
        msg(6, "U9", "alert", bot=True),
        msg(7, "U9", "alert", bot=True),
    ]
    assert [(p.name, p.count) for p in top_posters(messages, names, limit=3)] == [
        ("Dev", 2),
        ("Marta", 2),
        ("Carol", 1),
    ]


def test_busiest_hour_is_in_the_readers_time_zone() -> None:
    # 12:10, 12:20 UTC (13:xx Lisbon) against 14:05, 14:06 UTC (15:xx): a tie, earlier wins
    messages = [msg(10, "U1", "x"), msg(20, "U1", "x"), msg(125, "U1", "x"), msg(126, "U1", "x")]
    assert busiest_hour(messages, LISBON) == (13, 2)
    assert busiest_hour(messages, ZoneInfo("Asia/Dubai")) == (16, 2)
    assert busiest_hour([*messages, msg(130, "U1", "x")], LISBON) == (15, 3)
    assert busiest_hour([], LISBON) is None


def test_compute_stats_counts_replies_even_from_unread_threads() -> None:
    root = msg(0, "U1", "Payout batch late?", replies=2)
    unread = msg(10, "U2", "FYI deploy", replies=4)
    alert = msg(20, "U9", "[FIRING] x", bot=True)
    replies = {root.ts: [msg(1, "U2", "bank is slow"), msg(2, "U1", "thanks")]}

    stats = compute_stats([root, unread, alert], replies, names={}, tz=LISBON)

    assert stats.message_count == 3 + 6
    assert stats.top_level_count == 3
    assert stats.reply_count == 6
    assert stats.bot_message_count == 1
    assert stats.people_count == 2
    assert [t.replies for t in stats.top_threads] == [4, 2]
    assert stats.unanswered == ()


def test_plain_text_makes_mentions_inert() -> None:
    text = "<!here> <@U0DEV> look at <#C0PAY|payments-alerts> and <https://x.test|the runbook>"
    assert plain_text(text, {"U0DEV": "Dev Raman"}) == (
        "@here @Dev Raman look at #payments-alerts and the runbook"
    )


# --------------------------------------------------------------------------- requests


@pytest.mark.parametrize(
    ("text", "channel", "name", "hours"),
    [
        ("", None, None, 24),
        ("#C0PAYALERTS 24h", "C0PAYALERTS", None, 24),
        ("<#C0PAYALERTS|payments-alerts> last 12 hours", "C0PAYALERTS", None, 12),
        ("<#C0SUPPORT> 3 days", "C0SUPPORT", None, 72),
        ("what happened in the last week", None, None, 168),
        ("90 minutes", None, None, 1.5),
        ("#payments-alerts 2d", None, "payments-alerts", 48),
        ("digest CHARGEBACKS please", None, None, 24),
    ],
)
def test_parse_request(text: str, channel: str | None, name: str | None, hours: float) -> None:
    request = parse_request(text)
    assert (request.channel, request.channel_name, request.hours) == (channel, name, hours)


def test_parse_request_caps_the_window_at_a_week() -> None:
    request = parse_request("#C0PAYALERTS 30 days")
    assert (request.hours, request.capped) == (168, True)


# --------------------------------------------------------------------------- the graph


def run_context(reader: StaticSlackReader | None, *, channel: str = "C0PAYALERTS") -> RunContext:
    actor = Actor(user_id="U0CAROL", name="Carol Pereira", tz="Europe/Lisbon")
    return RunContext(
        run_id="run-1",
        skill="digest",
        thread=ThreadRef("T0PAYCO", channel, "1715690000.000100"),
        actor=actor,
        # Tools only ever get an access-checked reader; the sample workspace is its own
        # membership port.
        slack=(
            ConversationReader(source=reader, principal=actor, current=channel, access=reader)
            if reader is not None
            else None
        ),
        clock=lambda: NOW,
    )


async def digest(
    text: str,
    ctx: RunContext,
    *,
    model: BaseChatModel | None = None,
    saver: InMemorySaver | None = None,
) -> str:
    graph = build_digest_graph(model or OfflineChatModel(), checkpointer=saver or InMemorySaver())
    result = await graph.ainvoke(
        {"messages": [HumanMessage(text)]},
        {"configurable": {"thread_id": ctx.thread.thread_id}},
        context=ctx,
    )
    last = result["messages"][-1]
    assert isinstance(last, AIMessage)
    return str(last.text)


async def test_digest_of_the_sample_channel_has_the_right_numbers() -> None:
    text = await digest("#C0PAYALERTS 24h", run_context(StaticSlackReader.sample(NOW)))

    assert text.startswith("*Digest of #payments-alerts, last 24 h*\n\n(offline model) Summary")
    numbers = text[text.index("*By the numbers*") :].splitlines()
    assert numbers[1:4] == [
        "• 73 messages: 40 in the channel, 33 thread replies; 25 from bots",
        "• 6 people active; most active: Marta Nowak (17), Dev Raman (12), Sam Whitaker (6)",
        "• Busiest hour: 19:00-20:00 Europe/Lisbon (8 messages)",
    ]
    assert numbers[5].startswith("    1. Alertmanager, Mon 19:00: “[FIRING] Chargeback webhook")
    assert numbers[5].endswith("(5 replies)")
    assert "• Questions without an answer: 5 (times in Europe/Lisbon)" in numbers
    asked = [line.split(":")[0].strip() for line in numbers if line.startswith("    ◦ ")]
    assert asked == [
        "◦ Priya Nair, Mon 20",
        "◦ Leo Santos, Tue 02",
        "◦ Marta Nowak, Tue 05",
        "◦ Priya Nair, Tue 09",
        "◦ Carol Pereira, Tue 13",
    ]


async def test_digest_defaults_to_the_runs_channel_and_reads_the_window() -> None:
    reader = StaticSlackReader.sample(NOW)
    text = await digest("last 2 hours", run_context(reader, channel="C0PAYALERTS"))
    assert text.startswith("*Digest of #payments-alerts, last 2 h*")
    # 115, 90, 60, 45, 20 and 8 minutes ago, plus the one reply to the 60-minute alert
    assert "• 7 messages: 6 in the channel, 1 thread reply; 3 from bots" in text


async def test_the_model_sees_masked_text_and_the_checkpoint_keeps_no_bulk() -> None:
    model = ScriptedChatModel([reply("A busy day of alerts.")])
    saver = InMemorySaver()
    ctx = run_context(StaticSlackReader.sample(NOW))

    text = await digest("", ctx, model=model, saver=saver)

    assert text.startswith("*Digest of #payments-alerts, last 24 h*\n\nA busy day of alerts.\n\n")
    [call] = model.calls
    prompt = "\n".join(str(m.text) for m in call)
    assert "4111 1111 1111 1111" not in prompt and "jane.doe@example.com" not in prompt
    assert "[card ****1111]" in prompt and "[email ***@example.com]" in prompt
    assert "73 messages" in prompt  # the numbers are in the prompt
    assert "  > [19:09] Marta Nowak: rolling back to v2.30.4" in prompt  # replies are too

    graph = build_digest_graph(model, checkpointer=saver)
    state = await graph.aget_state({"configurable": {"thread_id": ctx.thread.thread_id}})
    assert state.values["collected"] == [] and state.values["transcript"] == ""
    assert "4111 1111" not in repr(state.values)


async def test_model_output_cannot_ping_the_channel() -> None:
    model = ScriptedChatModel([reply("<!here> all quiet, card 4111 1111 1111 1111")])
    text = await digest("", run_context(StaticSlackReader.sample(NOW)), model=model)
    assert "<!here>" not in text and "@here all quiet" in text
    assert "4111 1111 1111 1111" not in text


async def test_a_failing_model_still_posts_the_numbers(caplog: pytest.LogCaptureFixture) -> None:
    model = ScriptedChatModel([RuntimeError("provider down")])
    text = await digest("", run_context(StaticSlackReader.sample(NOW)), model=model)
    assert "(The summary could not be written this time, reference " in text
    assert "• 73 messages: 40 in the channel" in text
    assert "digest: the model call failed" in caplog.text


async def test_a_long_window_is_capped_and_says_so() -> None:
    text = await digest("#C0PAYALERTS 30 days", run_context(StaticSlackReader.sample(NOW)))
    assert text.startswith(
        "*Digest of #payments-alerts, last 7 days* (the longest window is 7 days)"
    )
    assert "• 75 messages: 42 in the channel" in text


async def test_an_empty_window_answers_without_the_model() -> None:
    reader = StaticSlackReader.sample(NOW)
    reader.add_channel(WorkspaceChannel("C0QUIET", "quiet"))
    model = ScriptedChatModel([])  # any model call would fail the test
    text = await digest("", run_context(reader, channel="C0QUIET"), model=model)
    assert text == "No messages in #quiet in the last 24 h."


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        ("#C0NOPE1", "I couldn't find the channel C0NOPE1, or I have no access to it."),
        ("#payments-alerts", "I can't look up #payments-alerts by name."),
    ],
)
async def test_unreadable_channels_get_a_helpful_answer(request_text: str, expected: str) -> None:
    text = await digest(
        request_text, run_context(StaticSlackReader.sample(NOW), channel="C0SUPPORT")
    )
    assert text.startswith(expected)


async def test_the_runs_own_channel_may_be_named() -> None:
    text = await digest("#payments-alerts 2h", run_context(StaticSlackReader.sample(NOW)))
    assert text.startswith("*Digest of #payments-alerts, last 2 h*")


class _NotInChannel(StaticSlackReader):
    async def channel_messages(self, channel: str, **kwargs: Any) -> Any:
        raise SlackReaderError("conversations.history", "not_in_channel")


async def test_a_channel_the_bot_is_not_in() -> None:
    text = await digest("", run_context(_NotInChannel.sample(NOW)))
    assert text == "I can't read #payments-alerts because I'm not in it. Invite me and ask again."


async def test_without_slack_history() -> None:
    text = await digest("", run_context(None))
    assert text == "Slack history is not available here, so I can't make a digest."


async def test_the_registry_entry_builds_a_working_graph() -> None:
    assert DIGEST_SKILL.name == "digest"
    assert DIGEST_SKILL.graph_factory is not None
    graph = DIGEST_SKILL.graph_factory(OfflineChatModel(), InMemorySaver())
    ctx = run_context(StaticSlackReader.sample(NOW))
    result = await graph.ainvoke(
        {"messages": [HumanMessage("#C0SUPPORT 12h")]},
        {"configurable": {"thread_id": "t"}},
        context=ctx,
    )
    assert "• 7 messages: 4 in the channel, 3 thread replies" in result["messages"][-1].text


# -- what a reader meets (issue 12) ----------------------------------------------------------


def test_a_conversation_with_the_bot_is_not_a_busiest_thread() -> None:
    asked = SlackMessage(ts="100.0", user="U1", text="<@U0BOT> digest please", reply_count=2)
    alert = SlackMessage(ts="200.0", user=None, text="[FIRING] latency", reply_count=1, bot=True)
    replies = {
        "100.0": [
            SlackMessage(ts="101.0", user="U0BOT", text="Digest…", bot=True),
            SlackMessage(ts="102.0", user="U1", text="thanks"),
        ],
        "200.0": [SlackMessage(ts="201.0", user="U2", text="looking")],
    }

    stats = compute_stats([asked, alert], replies, names={}, tz=UTC)

    assert [t.ts for t in stats.top_threads] == ["200.0"]
    assert stats.message_count == 5  # still counted as messages


def test_a_question_the_bot_answered_is_answered() -> None:
    question = SlackMessage(ts="100.0", user="U1", text="What time is it in Dubai?", reply_count=1)
    replies = {"100.0": [SlackMessage(ts="101.0", user="U0BOT", text="16:00", bot=True)]}

    assert compute_stats([question], replies, names={}, tz=UTC).unanswered == ()


def test_escaped_text_is_shown_once_escaped() -> None:
    alert = SlackMessage(ts="1.0", user="U2", text="p95 &gt; 800ms &amp; rising", reply_count=3)
    replies = {"1.0": [SlackMessage(ts=f"1.{i}", user="U3", text="on it") for i in range(3)]}

    stats = compute_stats([alert], replies, names={}, tz=UTC)

    assert stats.top_threads[0].text == "p95 > 800ms & rising"


async def test_one_message_count_per_digest() -> None:
    text = await digest("#C0PAYALERTS 24h", run_context(StaticSlackReader.sample(NOW)))

    counts = re.findall(r"\b(\d+) messages\b", text.split("*By the numbers*")[0])
    assert counts == []  # the summary does not count: the numbers below do, once
    assert "73 messages" in text


async def test_asked_in_a_dm_without_a_channel_it_asks_which_channel() -> None:
    context = run_context(StaticSlackReader.sample(NOW), channel="D0SAMDM")

    text = await digest("what did I miss today?", context)

    assert text.startswith("Which channel should I digest?")
