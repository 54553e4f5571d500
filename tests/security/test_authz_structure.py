"""The read rule is structural: no code reads Slack content except through the access layer.

Like ``tests/bot/test_manifest.py``, these read the source. A new tool (or a new skill, or
a scheduler feature) that reaches for the raw reader fails here, not in production:

* the raw reads (``thread_messages``, ``channel_messages``) are called only by
  ``skills/access.py``; everything else uses ``ConversationReader.thread`` / ``history``;
* tool and skill code imports no raw reader (``SlackReader``, the Web API reader, the
  sample reader) and nothing from ``bot/``;
* ``RunContext.slack`` is a ``ConversationReader``, which keeps its source private;
* every built-in tool that takes a channel refuses another conversation when nothing can
  vouch for the membership (the default for any tool someone adds).
"""

from __future__ import annotations

import ast
import typing
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, ToolMessage

from skills.access import ConversationReader
from skills.context import Principal, RunContext, ThreadRef
from skills.sample import StaticSlackReader
from skills.tools import builtin_tools
from tests.fakes.chat import ScriptedChatModel, reply, tool_call

ROOT = Path(__file__).resolve().parents[2]
ACCESS_LAYER = ROOT / "skills" / "access.py"
RAW_READS = frozenset({"thread_messages", "channel_messages"})
# Code that runs skills or their tools: it must never hold a raw reader.
TOOL_CODE = ("skills/tools", "skills/digest", "skills/middleware", "skills/agents.py")
RAW_READER_NAMES = frozenset({"SlackReader", "WebApiSlackReader", "StaticSlackReader"})
NOW = datetime(2024, 5, 14, 14, 0, tzinfo=UTC)


def sources(*parts: str) -> Iterator[tuple[Path, ast.Module]]:
    for part in parts:
        base = ROOT / part
        for path in sorted([base] if base.suffix == ".py" else base.rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_the_scan_sees_the_access_layer_calling_the_raw_reads() -> None:
    # Otherwise the next test could pass on nothing.
    [(_, tree)] = list(sources("skills/access.py"))
    called = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert called >= RAW_READS


def test_only_the_access_layer_calls_the_raw_reads() -> None:
    offenders = []
    for path, tree in sources("skills", "bot", "scheduler", "sandbox", "switchboard"):
        if path == ACCESS_LAYER:
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in RAW_READS
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.func.attr}()")
    assert not offenders, (
        "Slack content must be read through skills.access.ConversationReader (thread / "
        f"history), which checks the person may read it: {offenders}"
    )


def test_tool_code_imports_no_raw_reader_and_nothing_from_bot() -> None:
    offenders = []
    for path, tree in sources(*TOOL_CODE):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                names = {alias.name for alias in node.names}
                if module.split(".")[0] == "bot" or module == "skills.sample":
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} from {module}")
                if names & RAW_READER_NAMES:
                    offenders.append(
                        f"{path.relative_to(ROOT)}:{node.lineno} {sorted(names & RAW_READER_NAMES)}"
                    )
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "bot":
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} import bot")
    assert not offenders, f"tool code must only see the run's ConversationReader: {offenders}"


def test_nothing_reaches_into_the_readers_source() -> None:
    offenders = []
    for path, tree in sources("skills", "bot", "scheduler", "switchboard"):
        if path == ACCESS_LAYER:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in {"_raw_reader", "_membership"}:
                owner = node.value
                if not (isinstance(owner, ast.Name) and owner.id == "self"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert not offenders, offenders


def test_the_run_context_holds_only_an_access_checked_reader() -> None:
    hints = typing.get_type_hints(RunContext)
    assert hints["slack"] == ConversationReader | None
    assert all(slot.startswith("_") for slot in ConversationReader.__slots__)
    reader = ConversationReader(
        source=StaticSlackReader.sample(NOW), principal=Principal(user_id="U0X"), current="C0X"
    )
    assert not hasattr(reader, "__dict__")  # no attribute can be bolted on


def _channel_tools() -> list[str]:
    found = []
    for spec_name, tool in builtin_tools().items():
        if "channel" in (tool.args or {}):
            found.append(spec_name)
    return found


def test_the_scan_below_finds_the_channel_tools() -> None:
    assert {"slack.read_thread", "slack.read_channel"} <= set(_channel_tools())


@pytest.mark.parametrize("spec_name", _channel_tools())
async def test_every_channel_tool_refuses_another_conversation_by_default(spec_name: str) -> None:
    sample = StaticSlackReader.sample(NOW)
    carol = Principal(user_id="U0CAROL", tz="Europe/Lisbon")
    context = RunContext(
        run_id="r",
        skill="any",
        thread=ThreadRef("T0PAYCO", "C0PAYMENTS", None),
        actor=carol,
        slack=ConversationReader(source=sample, principal=carol, current="C0PAYMENTS"),
        clock=lambda: NOW,
    )
    root = next(
        m.ts
        for m in await sample.channel_messages("C0SUPPORT", oldest=NOW.replace(day=1), latest=NOW)
        if m.reply_count
    )
    tool = builtin_tools()[spec_name]
    model = ScriptedChatModel(
        [
            tool_call(tool.name, channel="C0SUPPORT", thread_ts=root)
            if "thread" in spec_name
            else tool_call(tool.name, channel="C0SUPPORT"),
            reply("ok"),
        ]
    )
    agent = create_agent(model=model, tools=[tool], context_schema=RunContext)
    result = await agent.ainvoke({"messages": [HumanMessage("go")]}, context=context)
    [message] = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert message.status == "error"
    assert "I can only read this conversation here, not C0SUPPORT" in str(message.content)
    assert context.slack is not None and context.slack.refused == ("C0SUPPORT",)
