"""Built-in tools (Slack reading, the clock) called by a real agent against sample data."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from skills.access import ConversationReader
from skills.context import Actor, RunContext, SlackReaderError, ThreadRef
from skills.sample import StaticSlackReader
from skills.spec import BUILTIN_TOOLS
from skills.tools import BUILTIN_TOOL_NAMES, builtin_tools
from tests.fakes.chat import ScriptedChatModel, reply, tool_call

NOW = datetime(2024, 5, 14, 14, 0, tzinfo=UTC)  # a Tuesday; Lisbon is UTC+1, Dubai UTC+4
CAROL = Actor(user_id="U0CAROL", name="Carol Pereira", tz="Europe/Lisbon")
DEV = Actor(user_id="U0DEV", name="Dev Raman", tz="Asia/Dubai")


@pytest.fixture
def reader() -> StaticSlackReader:
    return StaticSlackReader.sample(NOW)


def context(
    reader: StaticSlackReader | None,
    *,
    channel: str = "C0PAYALERTS",
    thread_ts: str | None = None,
    actor: Actor = CAROL,
    now: datetime = NOW,
) -> RunContext:
    return RunContext(
        run_id="run-1",
        skill="test",
        thread=ThreadRef("T0PAYCO", channel, thread_ts),
        actor=actor,
        # Tools only ever get an access-checked reader; the sample workspace is its own
        # membership port.
        slack=(
            ConversationReader(source=reader, principal=actor, current=channel, access=reader)
            if reader is not None
            else None
        ),
        clock=lambda: now,
    )


async def call(spec_name: str, ctx: RunContext, **args: Any) -> ToolMessage:
    """Have a scripted model call the tool once through `create_agent`; its ToolMessage."""
    tool: BaseTool = builtin_tools()[spec_name]
    model = ScriptedChatModel([tool_call(tool.name, **args), reply("done")])
    agent = create_agent(model=model, tools=[tool], context_schema=RunContext)
    result = await agent.ainvoke({"messages": [HumanMessage("go")]}, context=ctx)
    [message] = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert all(names == [tool.name] for names in model.bound_tools)
    return message


async def root_ts(reader: StaticSlackReader, channel: str, prefix: str) -> str:
    messages = await reader.channel_messages(channel, oldest=NOW - timedelta(days=7), latest=NOW)
    return next(m.ts for m in messages if m.text.startswith(prefix))


def test_builtin_tools_are_keyed_by_spec_name_with_provider_safe_names() -> None:
    tools = builtin_tools()
    assert {name: tool.name for name, tool in tools.items()} == BUILTIN_TOOL_NAMES
    assert set(tools) == BUILTIN_TOOLS  # every name a spec may `use:`
    for tool in tools.values():
        assert re.fullmatch(r"[a-zA-Z0-9_-]+", tool.name)
        # the injected runtime is not something the model can (or must) fill in
        shown = convert_to_openai_tool(tool)["function"]["parameters"]
        assert "runtime" not in shown.get("properties", {})


# --------------------------------------------------------------------------- read_thread


async def test_read_thread_defaults_to_the_runs_thread_in_the_askers_time_zone(
    reader: StaticSlackReader,
) -> None:
    ts = await root_ts(reader, "C0PAYALERTS", "[FIRING] Chargeback webhook")
    message = await call("slack.read_thread", context(reader, thread_ts=ts))

    assert message.status == "success"
    lines = message.text.splitlines()
    assert lines[0] == "Thread in C0PAYALERTS, 5 replies:"
    assert lines[1] == "--- Mon 13 May ---"
    # the root was posted 20 h before NOW (18:00 UTC), 19:00 in Lisbon
    assert (
        lines[2] == "[19:00] Alertmanager (bot): [FIRING] Chargeback webhook 5xx rate 4% (stripe)"
    )
    assert "[19:09] Marta Nowak: rolling back to v2.30.4" in lines
    assert lines[-1].startswith("[19:44] Marta Nowak: Replayed 37 events")


async def test_read_thread_reads_another_channels_thread_when_asked(
    reader: StaticSlackReader,
) -> None:
    ts = await root_ts(reader, "C0SUPPORT", "Escalating ticket")
    message = await call(
        "slack.read_thread",
        context(reader, actor=DEV),
        channel="<#C0SUPPORT|support>",
        thread_ts=ts,
    )
    assert message.status == "success"
    assert message.text.startswith("Thread in C0SUPPORT, 2 replies:")
    # 400 min before 14:00 UTC is 07:20 UTC, 11:20 in Dubai; Carol answered 30 min later
    assert "[11:50] Carol Pereira: On it. Please ask the customer for the receipt." in message.text


async def test_read_thread_without_a_thread_says_what_is_missing(
    reader: StaticSlackReader,
) -> None:
    message = await call("slack.read_thread", context(reader, thread_ts=None))
    assert message.status == "error"
    assert "pass thread_ts" in message.text


async def test_read_thread_of_an_unknown_thread_reports_slacks_error(
    reader: StaticSlackReader,
) -> None:
    message = await call("slack.read_thread", context(reader, thread_ts="1.000000"))
    assert message.status == "error"
    assert message.text == "Slack could not be read (thread_not_found)"


async def test_long_thread_keeps_its_root_and_the_latest_replies(
    reader: StaticSlackReader,
) -> None:
    root = reader.add_message("C0PAYMENTS", "U0DEV", "Incident review: what went wrong?", at=NOW)
    for index in range(200):
        reader.add_message(
            "C0PAYMENTS",
            "U0SAM",
            f"reply {index}: " + "lorem ipsum " * 10,
            at=NOW + timedelta(seconds=index + 1),
            thread_ts=root.ts,
        )
    message = await call(
        "slack.read_thread", context(reader, channel="C0PAYMENTS", thread_ts=root.ts)
    )
    assert message.status == "success"
    assert len(message.text) <= 12_000
    assert "Dev Raman: Incident review: what went wrong?" in message.text
    assert "reply 199:" in message.text
    assert "reply 0:" not in message.text
    assert re.search(r"\(\d+ earlier messages left out\)", message.text)


# --------------------------------------------------------------------------- read_channel


async def test_read_channel_gives_the_last_day_with_reply_counts(
    reader: StaticSlackReader,
) -> None:
    message = await call("slack.read_channel", context(reader))
    assert message.status == "success"
    header, *lines = message.text.splitlines()
    assert header == "#payments-alerts (C0PAYALERTS), last 24 h: 40 messages, oldest first"
    assert sum(1 for line in lines if line.startswith("[")) == 40
    assert (
        "[19:00] Alertmanager (bot): [FIRING] Chargeback webhook 5xx rate 4% (stripe) (5 replies)"
        in lines
    )
    assert "Quiet night so far" not in message.text  # 25 h old: outside the window


async def test_read_channel_window_and_limit(reader: StaticSlackReader) -> None:
    two_hours = await call("slack.read_channel", context(reader), hours=2)
    assert two_hours.text.splitlines()[0].endswith("last 2 h: 6 messages, oldest first")

    latest_three = await call("slack.read_channel", context(reader), limit=3)
    lines = [line for line in latest_three.text.splitlines() if line.startswith("[")]
    assert "3 messages (the limit)" in latest_three.text
    assert [line.split(": ", 1)[0] for line in lines] == [
        "[14:15] Sam Whitaker",
        "[14:40] Alertmanager (bot)",
        "[14:52] Dev Raman",
    ]


async def test_read_channel_rejects_a_window_longer_than_a_week(
    reader: StaticSlackReader,
) -> None:
    message = await call("slack.read_channel", context(reader), hours=500)
    assert message.status == "error"
    assert "hours" in message.text


async def test_read_channel_of_an_unknown_channel_is_a_readable_error(
    reader: StaticSlackReader,
) -> None:
    message = await call("slack.read_channel", context(reader), channel="C0NOPE")
    assert message.status == "error"
    assert message.text == "Slack could not be read (channel_not_found)"


async def test_read_channel_rejects_a_channel_name(reader: StaticSlackReader) -> None:
    message = await call("slack.read_channel", context(reader), channel="payments alerts")
    assert message.status == "error"
    assert "not a channel id" in message.text


async def test_read_channel_caps_the_transcript_and_keeps_the_newest(
    reader: StaticSlackReader,
) -> None:
    for index in range(400):
        reader.add_message(
            "C0PAYMENTS",
            "U0PRIYA",
            f"note {index}: " + "settlement figures " * 8,
            at=NOW - timedelta(minutes=400 - index),
        )
    message = await call("slack.read_channel", context(reader, channel="C0PAYMENTS"), limit=1000)
    assert len(message.text) <= 12_000
    assert "note 399:" in message.text
    assert "note 0:" not in message.text
    assert "earlier messages left out" in message.text


async def test_without_slack_the_tools_say_history_is_not_available() -> None:
    for spec_name in ("slack.read_thread", "slack.read_channel"):
        message = await call(spec_name, context(None, thread_ts="1.0"))
        assert message.status == "error"
        assert message.text == "Slack history is not available here"


class _RateLimitedReader(StaticSlackReader):
    async def user_info(self, user_id: str) -> Any:
        raise SlackReaderError("users.info", "ratelimited")


async def test_a_slack_error_becomes_a_short_tool_error() -> None:
    reader = _RateLimitedReader.sample(NOW)
    message = await call("slack.user_info", context(reader), user="U0DEV")
    assert message.status == "error"
    assert message.text == "Slack could not be read (ratelimited)"


# --------------------------------------------------------------------------- user_info


async def test_user_info_gives_name_title_and_local_time(reader: StaticSlackReader) -> None:
    message = await call("slack.user_info", context(reader), user="<@U0DEV>")
    assert message.status == "success"
    assert message.text == (
        "Dev Raman (@dev, U0DEV); title: Payments SRE; "
        "time zone: Asia/Dubai (local time Tue 18:00, UTC+0400)"
    )


async def test_user_info_of_an_unknown_user(reader: StaticSlackReader) -> None:
    message = await call("slack.user_info", context(reader), user="U0NOBODY")
    assert message.status == "error"
    assert message.text == "no Slack user U0NOBODY"


# --------------------------------------------------------------------------- time.now


@pytest.mark.parametrize(
    ("tz", "now", "expected"),
    [
        (
            "Asia/Dubai",
            NOW,
            "Tuesday 2024-05-14 18:00 (Asia/Dubai, UTC+04:00); ISO 2024-05-14T18:00:00+04:00",
        ),
        (
            "Europe/Lisbon",
            NOW,
            "Tuesday 2024-05-14 15:00 (Europe/Lisbon, UTC+01:00); ISO 2024-05-14T15:00:00+01:00",
        ),
        (  # winter: Lisbon is on UTC, and late evening in Dubai is already the next day
            "Europe/Lisbon",
            datetime(2024, 1, 7, 23, 30, tzinfo=UTC),
            "Sunday 2024-01-07 23:30 (Europe/Lisbon, UTC+00:00); ISO 2024-01-07T23:30:00+00:00",
        ),
        (
            "Asia/Dubai",
            datetime(2024, 1, 7, 23, 30, tzinfo=UTC),
            "Monday 2024-01-08 03:30 (Asia/Dubai, UTC+04:00); ISO 2024-01-08T03:30:00+04:00",
        ),
    ],
)
async def test_time_now_is_in_the_askers_time_zone(tz: str, now: datetime, expected: str) -> None:
    actor = Actor(user_id="U0X", tz=tz)
    message = await call("time.now", context(None, actor=actor, now=now))
    assert message.status == "success"
    assert message.text == expected


async def test_time_now_with_an_unknown_zone_falls_back_to_utc_and_says_so() -> None:
    actor = Actor(user_id="U0X", tz="Mars/Olympus")
    message = await call("time.now", context(None, actor=actor))
    assert message.text.startswith("Tuesday 2024-05-14 14:00 (UTC; 'Mars/Olympus' is not a known")
