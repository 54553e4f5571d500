"""The `offline` model: a deterministic stand-in that needs no network.

It lets a fresh install, the sandbox and the test-suite run whole skills end to end:

- `issue_refund order_id=42 amount=10` (a bound tool's name followed by `key=value`
  arguments) becomes a tool call, with values coerced to the types the tool's JSON schema
  asks for;
- once the tool answers, it replies with a short summary quoting the (truncated) result,
  and says so when the call was rejected or failed;
- a few plain requests become the tool call a real model would make: "summarize this
  thread" / "explain this thread" reads the current thread (`slack_read_thread` with no
  arguments), "summarize #channel for the last 12 hours" reads that channel, "what time
  is it in Dubai?" asks `time_now` for that zone (:func:`plan`; :func:`understands` tells
  the product which of its examples work offline);
- a request for a summary/digest over conversation lines found in the prompt or a tool
  result gets an extractive summary: message count and the first sentences of the
  longest messages. The request must say so: a skill's instructions asking for
  summaries never turn an unrelated message into one. When the prompt gives exact
  figures and says not to recompute them (the digest), the summary does not count;
- anything else gets a plain reply that is clearly labelled as offline, suggests a
  command that works right there and says in one line how to switch to a real model.

Routing needs no model call offline: the runtime calls `keyword_route` instead of
`with_structured_output`, which this model does not support.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.runnables import Runnable
from pydantic import BaseModel

from skills.middleware.untrusted import unwrap
from skills.models._text import (
    ToolSpec,
    TranscriptLine,
    estimate_tokens,
    extract_transcript,
    find_tool_command,
    first_sentence,
    keyword_scores,
    truncate,
)
from skills.models.local import LocalChatModel, message_chunks

__all__ = [
    "LABEL",
    "SWITCH_HINT",
    "OfflineChatModel",
    "keyword_route",
    "message_chunks",
    "plan",
    "understands",
    "usage_for",
]

LABEL = "(offline model)"
"""Every reply of the offline model starts with this, so nobody mistakes it for a real one."""

_REJECTED = re.compile(r"\b(reject\w*|denied|deny|declined|not approved)\b", re.IGNORECASE)
_ASKS_FOR_SUMMARY = re.compile(
    r"\b(summar\w*|digest\w*|recap\w*|tl;?dr|catch(?:ing)? (?:me )?up|highlights?"
    r"|stand-?ups?|what did i miss|what happened|explain\w*)",
    re.IGNORECASE,
)
# "this thread", "the conversation above": the conversation the request was made in.
_THIS_THREAD = re.compile(
    r"\b(?:this|the|our) (?:thread|conversation|discussion|chat)\b|\babove\b", re.IGNORECASE
)
_CHANNEL_REF = re.compile(r"<#(C[A-Z0-9]{2,})(?:\|[^>]*)?>|(?<![\w#])#(C[A-Z0-9]{6,})\b")
_CHANNEL_NAME = re.compile(r"(?<![\w<#|&])#([a-z0-9][a-z0-9_-]*)(?![\w>])")
_WINDOW = re.compile(r"\b(\d{1,3})\s*(h|hrs?|hours?|d|days?)\b", re.IGNORECASE)
_ASKS_FOR_TIME = re.compile(
    r"\bwhat(?:'s| is)?(?: the)? time\b|\btime is it\b|\bcurrent time\b|\btime now\b",
    re.IGNORECASE,
)
# The note langchain's human-in-the-loop middleware puts before an edited call's result:
# meant for the model, never for the person reading the answer.
_EDIT_NOTE = re.compile(
    r"\A\s*Note: a human reviewer replaced this tool call.*?(?:Tool response:\s*|\Z)",
    re.DOTALL,
)

# A prompt that hands over exact figures and asks not to recompute them (the digest's).
_FIGURES_GIVEN = re.compile(r"do\s+not\s+(?:repeat\s+or\s+)?recompute", re.IGNORECASE)

SWITCH_HINT = (
    "For real answers, start Switchboard with `SWITCHBOARD_MODEL=openai:gpt-4.1-mini` and "
    "`OPENAI_API_KEY` (or `OPENAI_BASE_URL` for any OpenAI-compatible server)."
)
"""The one line every canned reply ends with: how to switch to a real model."""


def _zone_names() -> dict[str, str]:
    """City → IANA zone (``dubai`` → ``Asia/Dubai``), for "what time is it in Dubai?"."""
    import zoneinfo

    cities: dict[str, str] = {}
    for name in sorted(zoneinfo.available_timezones()):
        if "/" in name and not name.startswith(("Etc/", "SystemV/", "US/")):
            cities.setdefault(name.rsplit("/", 1)[1].replace("_", " ").lower(), name)
    return cities


_ZONES: dict[str, str] | None = None


def _zone_in(text: str) -> str | None:
    global _ZONES
    if _ZONES is None:
        _ZONES = _zone_names()
    lowered = text.lower()
    for city, name in _ZONES.items():
        if re.search(rf"(?<![\w/]){re.escape(city)}(?![\w/])", lowered):
            return name
    match = re.search(r"\b([A-Z][a-z]+/[A-Z][A-Za-z_]+)\b", text)
    return match.group(1) if match and match.group(1) in _ZONES.values() else None


def plan(request: str, tools: Sequence[ToolSpec]) -> tuple[str, dict[str, Any]] | None:
    """The tool call the offline model makes for ``request``, or None.

    A command (``lookup_order order_id=42``) first; then the plain requests it knows: a
    summary or explanation of "this thread" reads the current thread, of a channel
    (``<#C…>``) reads that channel over the window named ("12 hours", "3 days"; default
    24 h), and "what time is it (in Dubai)?" asks the clock (in that zone).
    """
    command = find_tool_command(request, tools)
    if command is not None:
        return command[0].name, command[1]
    names = {tool.name for tool in tools}
    if _ASKS_FOR_TIME.search(request) and "time_now" in names:
        zone = _zone_in(request)
        return "time_now", ({"tz": zone} if zone else {})
    wants_summary = bool(_ASKS_FOR_SUMMARY.search(request))
    if _CHANNEL_NAME.search(request):
        return None  # a channel by name: this model cannot look it up (Slack links them)
    channel = _CHANNEL_REF.search(request)
    if channel and (wants_summary or _WINDOW.search(request)) and "slack_read_channel" in names:
        args: dict[str, Any] = {"channel": channel.group(1) or channel.group(2)}
        window = _WINDOW.search(request)
        if window:
            amount, unit = int(window.group(1)), window.group(2).lower()
            args["hours"] = min(amount * (24 if unit.startswith("d") else 1), 168)
        return "slack_read_channel", args
    if (wants_summary or _THIS_THREAD.search(request)) and "slack_read_thread" in names:
        return "slack_read_thread", {}
    return None


def understands(request: str, tools: Sequence[Mapping[str, Any]]) -> bool:
    """Does the offline model do something real with ``request`` (not the canned reply)?

    ``tools`` are OpenAI-format tools (as bound). Used to show only examples that work.
    """
    specs = [ToolSpec.from_openai(tool) for tool in tools]
    return plan(request, specs) is not None or (
        bool(_ASKS_FOR_SUMMARY.search(request)) and bool(extract_transcript([request]))
    )


def keyword_route(text: str, candidates: Mapping[str, str]) -> str | None:
    """Choose the skill whose name and description best match `text`, without a model.

    `candidates` maps skill names to their descriptions. Returns `None` when nothing in
    the text relates to any candidate. Ties go to the alphabetically first name, so the
    choice does not depend on the order skills were loaded in.
    """
    scores = keyword_scores(text, candidates)
    ranked = sorted((-score, name) for name, score in scores.items() if score > 0)
    return ranked[0][1] if ranked else None


def usage_for(messages: Sequence[BaseMessage], reply: AIMessage) -> UsageMetadata:
    """Token counts estimated from text length (4 characters a token)."""
    prompt = sum(estimate_tokens(str(m.text)) for m in messages)
    produced = str(reply.text) + "".join(
        tc["name"] + json.dumps(tc["args"], sort_keys=True) for tc in reply.tool_calls
    )
    completion = estimate_tokens(produced)
    return UsageMetadata(
        input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion
    )


class OfflineChatModel(LocalChatModel):
    """A deterministic chat model that needs no network (the `offline` model string).

    Same messages and tools in, same reply out. See the module docstring for what it
    understands. Works with `langchain.agents.create_agent`, including streaming.
    """

    model_name: str = "offline"
    summary_lines: int = 5
    """How many messages an extractive summary quotes."""
    result_chars: int = 300
    """How much of a tool result a reply quotes."""

    @property
    def _llm_type(self) -> str:
        return "offline"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Not supported: the offline model routes with `keyword_route` instead."""
        raise NotImplementedError(
            "the offline model has no structured output; "
            "route with skills.models.offline.keyword_route instead"
        )

    # ------------------------------------------------------------------ generation

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        return self.respond(messages, tools=kwargs.get("tools"))

    def respond(
        self,
        messages: Sequence[BaseMessage],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> AIMessage:
        """The reply to `messages` given OpenAI-format `tools` (what `bind_tools` stores)."""
        specs = [ToolSpec.from_openai(tool) for tool in tools or ()]
        reply = self._compose(messages, specs)
        reply.usage_metadata = usage_for(messages, reply)
        reply.response_metadata = {"model_name": self.model_name, "model_provider": "offline"}
        return reply

    def _compose(self, messages: Sequence[BaseMessage], tools: Sequence[ToolSpec]) -> AIMessage:
        conversation = [m for m in messages if not isinstance(m, SystemMessage)]
        if conversation and isinstance(conversation[-1], ToolMessage):
            return AIMessage(content=self._after_tools(messages))
        request = next(
            (str(m.text) for m in reversed(conversation) if isinstance(m, HumanMessage)), ""
        )
        command = find_tool_command(request, tools)
        if command is not None:
            tool, args = command
            return AIMessage(content="", tool_calls=[_tool_call(tool.name, args, messages)])
        context = [str(m.text) for m in messages if isinstance(m, SystemMessage)]
        earlier = [
            TranscriptLine(speaker=m.name or "someone", text=str(m.text))
            for m in conversation[:-1]
            if isinstance(m, HumanMessage) and str(m.text).strip()
        ]
        summary = self._summary(messages, [*context, request], fallback=earlier, request=request)
        if summary is not None:
            return AIMessage(content=summary)
        planned = plan(request, tools)
        if planned is not None:
            name, args = planned
            return AIMessage(content="", tool_calls=[_tool_call(name, args, messages)])
        return AIMessage(content=_plain_reply(request, tools))

    def _after_tools(self, messages: Sequence[BaseMessage]) -> str:
        """Summarise the tool results that follow the last tool-calling AI message."""
        results: list[ToolMessage] = []
        names: dict[str, str] = {}
        for message in reversed(messages):
            if isinstance(message, ToolMessage):
                results.insert(0, message)
            elif isinstance(message, AIMessage):
                names = {tc["id"] or "": tc["name"] for tc in message.tool_calls}
                break
        # Tool results reach models inside untrusted-data delimiters; this model reads them
        # as data anyway, so it looks at the content. A reviewer's edit note is for the
        # model: it is dropped, and the reply says the call ran as edited.
        contents = [_EDIT_NOTE.sub("", unwrap(str(r.text)), count=1) for r in results]
        # A conversation a tool read is summarised: that is what it was read for.
        lines = extract_transcript(contents, minimum=1)
        if len(lines) >= 2:
            return _extractive_summary(lines, self.summary_lines, source=_source(contents))
        if len(lines) == 1 and len(results) == 1 and results[0].status != "error":
            only = lines[0]
            return (
                f"{LABEL} There is only one message there so far ({only.speaker}: "
                f"“{truncate(only.text, 120)}”), so there is nothing to summarise yet."
            )
        parts = []
        for result, content in zip(results, contents, strict=True):
            name = result.name or names.get(result.tool_call_id) or "the tool"
            edited = " (as edited by the reviewer)" if content != unwrap(str(result.text)) else ""
            fields = _fields(content, self.result_chars)
            if fields is not None and result.status != "error":
                parts.append(f"{name}{edited} returned:\n{fields}")
                continue
            text = truncate(content, self.result_chars)
            if _REJECTED.search(text) and not edited:
                parts.append(f"{name} was rejected: {text}")
            elif result.status == "error":
                parts.append(f"{name}{edited} failed: {text}")
            else:
                parts.append(f"{name}{edited} returned {text}")
        return f"{LABEL} " + "; ".join(parts)

    def _summary(
        self,
        messages: Sequence[BaseMessage],
        sources: Sequence[str],
        *,
        fallback: Sequence[TranscriptLine] = (),
        request: str = "",
    ) -> str | None:
        """An extractive summary when one is asked for and there is a conversation to summarise.

        The conversation is the message lines found in `sources` (the prompt and the
        request), for which instructions asking for a summary are enough; else `fallback`
        (earlier messages of the thread, at least two), which only the person's own
        `request` can ask to summarise ("summarize this conversation").
        """
        asks = [str(m.text) for m in messages if isinstance(m, SystemMessage | HumanMessage)]
        if any(_ASKS_FOR_SUMMARY.search(text) for text in asks):
            lines = extract_transcript(sources)
            if lines:
                counted = not any(_FIGURES_GIVEN.search(text) for text in sources)
                return _extractive_summary(lines, self.summary_lines, counted=counted)
        person_asks = _ASKS_FOR_SUMMARY.search(request) or _THIS_THREAD.search(request)
        if person_asks and len(fallback) >= 2:
            return _extractive_summary(list(fallback), self.summary_lines)
        return None


def _fields(content: str, budget: int) -> str | None:
    """A JSON object result as ``• key: value`` lines (what a person reads), None for
    anything else. Values are cut to share ``budget`` characters."""
    try:
        value = json.loads(content)
    except ValueError:
        return None
    if not isinstance(value, dict) or not value:
        return None
    items = list(value.items())[:12]
    each = max(40, budget // len(items))
    lines = []
    for key, item in items:
        shown = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
        lines.append(f"• {key}: {truncate(shown, each) if shown != '' else '—'}")
    return "\n".join(lines)


def _tool_call(name: str, args: dict[str, Any], messages: Sequence[BaseMessage]) -> ToolCall:
    # The id depends on the whole conversation so far: stable for the same input, yet
    # different when the same command is repeated later in a thread.
    seed = json.dumps(
        [name, args, [[m.type, str(m.text)] for m in messages]], sort_keys=True, default=str
    )
    call_id = "call_" + hashlib.sha256(seed.encode()).hexdigest()[:24]
    return ToolCall(name=name, args=args, id=call_id, type="tool_call")


def _source(contents: Sequence[str]) -> str | None:
    """What one tool read, from its result's heading line (``#payments (C0PAYMENTS), last
    24 h: 12 messages…`` → ``#payments (C0PAYMENTS), last 24 h``)."""
    if len(contents) != 1:
        return None
    first = contents[0].strip().split("\n", 1)[0]
    if extract_transcript([first], minimum=1) or ":" not in first:
        return None
    return truncate(first.split(":", 1)[0], 80) or None


def _extractive_summary(
    lines: Sequence[TranscriptLine],
    limit: int,
    *,
    counted: bool = True,
    source: str | None = None,
) -> str:
    """The longest messages' first sentences; ``counted`` adds how many messages and
    participants (left out where exact figures are shown next to the summary), ``source``
    what was read."""
    speakers = sorted({line.speaker for line in lines})
    ranked = sorted(range(len(lines)), key=lambda i: (-len(lines[i].text), i))[:limit]
    picked = [lines[i] for i in sorted(ranked)]
    where = f" ({source})" if source else ""
    header = (
        f"{LABEL} Summary of {_plural(len(lines), 'message')} from "
        f"{_plural(len(speakers), 'participant')}{where}; the longest points, in order:"
        if counted
        else f"{LABEL} Summary: the longest points, in order:"
    )
    bullets = [f"• {line.speaker}: {first_sentence(line.text)}" for line in picked]
    return "\n".join([header, *bullets])


#: What a tool that needs no arguments does when called bare, for the canned reply.
_BARE_USES = {
    "slack_read_thread": "summarises this thread",
    "time_now": "tells you the time",
    "slack_read_channel": "summarises this channel's last 24 hours",
}


def _plain_reply(request: str, tools: Sequence[ToolSpec]) -> str:
    """The canned reply: what it understood, one thing that works right here, how to switch.

    The suggestion needs no ids the person cannot see: a tool that takes no required
    arguments works bare (``slack_read_thread`` reads the current thread).
    """
    understood = (
        f"I understood: “{truncate(request, 200)}”. I'm the built-in offline model: I run "
        "tool commands and summarise conversations, but I can't answer questions."
        if request.strip()
        else "I got no text."
    )
    order = {name: index for index, name in enumerate(_BARE_USES)}
    bare = sorted((t for t in tools if not t.required), key=lambda t: order.get(t.name, 99))
    if bare:
        tool = bare[0]
        what = _BARE_USES.get(tool.name, "runs it")
        how = f"Try replying `{tool.name}` here: it {what}."
        others = [t.name for t in bare[1:3]]
        if others:
            how += " Also: " + ", ".join(f"`{name}`" for name in others) + "."
    elif tools:
        how = (
            f"Tools available: {', '.join(t.name for t in tools)}. To call one, write its name "
            f"followed by key=value arguments, e.g. `{tools[0].usage()}`."
        )
    else:
        how = "This skill has no tools."
    return f"{LABEL} {understood} {how}\n{SWITCH_HINT}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
