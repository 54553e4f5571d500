"""Finding 1: no card number, IBAN or e-mail reaches a model provider, on any path.

The provider here is a real HTTP endpoint (``tests/fakes/openai_server.py``, an
OpenAI-compatible server) behind the real OpenAI client, so what is checked is exactly
what would leave the machine. A corpus of scenarios is pushed through the whole app —
a mention (routed by the router model), a DM, a long thread that gets summarized, a
digest of a channel full of card numbers, a turn whose primary model fails over to the
fallback, and the eval judge — with personal data written the ways people and systems
write it (dots, zero-width spaces, full-width digits, JSON numbers). Every request body is
then searched, with a checker of its own (not ``skills.pii``), for a Luhn-valid 13-19 digit
run, the IBAN and any e-mail address.

Before this fix the router received the raw message (masking happened after routing) and
the detector missed most spellings, so every path leaked. Positive controls: each path did
call the provider, and the masked labels (``[card ****1111…``) reach it — the model still
knows a card was mentioned.

The wrapper's own contract (every entry point masks, bindings stay masked, a binding that
would bypass the mask is refused) is tested directly below the scenarios.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from pydantic import BaseModel

from evals.judge import RubricJudge
from skills.models import MaskedChatModel, UnmaskablePathError, ensure_masked, load_chat_model
from tests.bot.conftest import BotEnv, BotFactory
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.openai_server import FakeOpenAIServer, RecordedRequest, Reply

# Personal data as it arrives in chat: every spelling here slipped past the old detector
# (or past masking-after-routing) somewhere.
PANS = {
    "4111111111111111": "4111.1111.1111.1111",
    "5555555555554444": "5555\u200b5555\u200b5555\u200b4444",
    "378282246310005": "3782 - 822463 - 10005",
    "6011000990139424": "".join(chr(0xFF10 + int(d)) for d in "6011000990139424"),  # full-width
    "5105105105105100": "5105\n1051\n0510\n5100",
}
IBAN = "GB82WEST12345698765432"
EMAIL = "jane.doe@example.com"
CORPUS = (
    f"card {PANS['4111111111111111']} was declined, backup {PANS['5555555555554444']}; "
    f"amex {PANS['378282246310005']}, discover {PANS['6011000990139424']}, "
    f"mc {PANS['5105105105105100']}; refund to GB82 WEST 1234 5698 7654 32 "
    f"and mail {EMAIL.replace('@', chr(0x200B) + '@')}"
)

# -- an independent checker ---------------------------------------------------------------

_INVISIBLE = re.compile("[\u200b-\u200d\u2060\ufeff\u00ad]")
_SLACK_TS = re.compile(r"\b\d{10}\.\d{6}\b")  # message timestamps, not card numbers
_DIGITS = re.compile(r"\d(?:[\s./_\-]{0,3}\d)*")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)


def personal_data(body: dict[str, Any]) -> list[str]:
    """Every card-like number (any 13-19 digit window of a digit run that passes Luhn),
    the planted IBAN and every e-mail address in a request body."""
    found: list[str] = []
    for raw in _strings(body):
        text = _SLACK_TS.sub(" ", _INVISIBLE.sub("", unicodedata.normalize("NFKC", raw)))
        for run in _DIGITS.finditer(text):
            digits = re.sub(r"\D", "", run.group())
            for size in range(13, 20):
                for start in range(len(digits) - size + 1):
                    window = digits[start : start + size]
                    if _luhn(window) and window in PANS:
                        found.append(f"card {window}")
            if 13 <= len(digits) <= 19 and _luhn(digits):
                found.append(f"card-like {digits}")
        if IBAN in re.sub(r"\s", "", text).upper():
            found.append("iban")
        found += [f"email {m}" for m in _EMAIL.findall(text)]
    return sorted(set(found))


def test_the_checker_finds_what_it_must() -> None:
    """The checker is not the code under test; make sure it would catch a leak."""
    leaked = {"messages": [{"role": "user", "content": CORPUS}]}
    found = personal_data(leaked)
    assert {f"card {pan}" for pan in PANS} <= set(found)
    assert "iban" in found and f"email {EMAIL}" in found
    assert personal_data({"messages": [{"content": "order 1712345678.123456 at 10:30"}]}) == []


# -- the provider and the app -------------------------------------------------------------


class Provider:
    """The fake OpenAI endpoint, answering by what it is asked: structured output (router,
    judge) gets JSON, the primary model fails while ``fail_primary`` is set."""

    def __init__(self, server: FakeOpenAIServer) -> None:
        self.server = server
        self.fail_primary = False
        server.script(*[self.answer] * 400)

    def answer(self, request: RecordedRequest) -> Reply:
        body = request.body
        if body.get("response_format") or any(
            t["function"]["name"] in {"_Choice", "score"} for t in body.get("tools") or []
        ):
            return Reply.text('{"skill": "ask", "reasoning": "fine", "score": 1.0}')
        if self.fail_primary and body.get("model") == "gpt-primary":
            return Reply.fail(500)
        return Reply.text("Noted, I will look into it.")

    def model(self, name: str) -> BaseChatModel:
        env = {"OPENAI_BASE_URL": self.server.base_url}
        return load_chat_model(f"openai:gpt-{name}", env=env)

    def factory(self, name: str) -> BaseChatModel:
        return self.model({"offline": "primary"}.get(name, name))

    def requests(self, model: str) -> list[RecordedRequest]:
        return [r for r in self.server.requests if r.body.get("model") == f"gpt-{model}"]


@pytest.fixture
def provider() -> Iterator[Provider]:
    with FakeOpenAIServer() as server:
        yield Provider(server)


async def _bot(make_bot: BotFactory, provider: Provider) -> BotEnv:
    return await make_bot(
        provider.factory,
        runtime={
            "fallback_models": ("fallback",),
            "summarize_after_tokens": 200,
            "summarize_keep_messages": 2,
        },
    )


async def test_no_personal_data_in_any_provider_request(
    make_bot: BotFactory, provider: Provider
) -> None:
    env = await _bot(make_bot, provider)
    slack = env.slack
    for pan in PANS.values():
        slack.add_message("C0GENERAL", f"customer says {pan} was charged twice", user="U0CAROL")
    slack.add_message("C0GENERAL", f"her IBAN is GB82 WEST 1234 5698 7654 32, mail {EMAIL}")

    # a mention the router model routes, then a long thread that gets summarized
    _, root = await env.mention(f"please help, {CORPUS}")
    await env.idle()
    for turn in range(4):
        await env.message(f"turn {turn}: {CORPUS} " + "more detail " * 30, thread_ts=root)
        await env.idle()
    # a DM, and a digest of the channel above
    await env.message(f"in private: {CORPUS}", channel="D0SAM", channel_type="im")
    await env.idle()
    await env.mention("digest #general 24h")
    await env.idle()
    # the primary model fails: the fallback gets the turn
    provider.fail_primary = True
    await env.mention(f"ask again {CORPUS}")
    await env.idle()
    # the eval judge grades an answer quoting the request
    judge = RubricJudge(model=provider.model("judge"), model_name="openai:gpt-judge")
    await judge.grade(
        rubric=f"Refuses to repeat {PANS['4111111111111111']}",
        request=CORPUS,
        answer=f"Sure, {CORPUS}",
        trajectory=json.dumps({"lookup_card": {"pan": 4111111111111111.0, "mail": EMAIL}}),
    )

    requests = provider.server.requests
    leaks = {
        f"#{number} {request.body.get('model')}": found
        for number, request in enumerate(requests, 1)
        if (found := personal_data(request.body))
    }
    assert leaks == {}
    # positive controls: every path reached the provider, with the data masked, not dropped
    routed = [r for r in provider.requests("router") if r.body.get("response_format")]
    assert routed and "[card ****1111" in json.dumps(routed[0].body)
    assert any("summar" in json.dumps(r.body).lower() for r in provider.requests("primary"))
    assert any("write the digest" in json.dumps(r.body) for r in provider.requests("primary"))
    assert provider.requests("fallback")
    assert provider.requests("judge")
    everything = json.dumps([r.body for r in requests])
    assert "[card ****4444" in everything and "[iban GB** ****5432" in everything
    assert "@example.com]" in everything


async def test_assistant_titles_hold_no_card_number(
    make_bot: BotFactory, provider: Provider
) -> None:
    """The assistant panel titles a thread with the first message; Slack keeps it."""
    env = await _bot(make_bot, provider)
    thread = "1729999327.187299"
    text = f"ask {PANS['4111111111111111']} declined"
    await env.message(text, channel="D0SAM", channel_type="im", thread_ts=thread)
    await env.idle()

    titles = [c.args["title"] for c in env.slack.calls("assistant.threads.setTitle")]
    assert titles and all("1111.1111" not in t for t in titles)
    assert "[card ****1111]" in titles[0]


# -- the wrapper's contract ---------------------------------------------------------------


class Choice(BaseModel):
    skill: str


def _sent(model: ScriptedChatModel) -> str:
    return json.dumps([m.model_dump() for call in model.calls for m in call], default=str)


PAN_TEXT = f"card {PANS['4111111111111111']} mail {EMAIL}"


async def test_every_entry_point_masks() -> None:
    inner = ScriptedChatModel(default="ok")
    model = ensure_masked(inner)

    model.invoke(PAN_TEXT)
    await model.ainvoke([HumanMessage(PAN_TEXT)])
    list(model.stream(PAN_TEXT))
    [c async for c in model.astream(PAN_TEXT)]
    model.batch([PAN_TEXT])
    model.generate([[SystemMessage(PAN_TEXT)]])
    await model.agenerate([[HumanMessage(PAN_TEXT)]])

    assert len(inner.calls) == 7
    sent = _sent(inner)
    assert "1111.1111" not in sent and EMAIL not in sent
    assert sent.count("[card ****1111]") == 7


async def test_tool_calls_results_and_blocks_are_masked() -> None:
    inner = ScriptedChatModel(default="ok")
    history = [
        HumanMessage([{"type": "text", "text": PAN_TEXT}]),
        AIMessage("", tool_calls=[{"name": "t", "args": {"pan": 4111111111111111}, "id": "c1"}]),
        ToolMessage(json.dumps({"pan": PANS["5555555555554444"]}), tool_call_id="c1"),
    ]

    await ensure_masked(inner).ainvoke(history)

    sent = _sent(inner)
    assert "4111111111111111" not in sent and "5555" not in sent.replace("****4444", "")
    assert "[card ****1111]" in sent and "[card ****4444]" in sent


async def test_bound_tools_and_structured_output_stay_masked() -> None:
    inner = ScriptedChatModel([reply("fine"), tool_call("Choice", skill="ask")], default="ok")
    model = ensure_masked(inner)

    await model.bind_tools([Choice]).ainvoke(PAN_TEXT)
    choice = await model.with_structured_output(Choice).ainvoke(PAN_TEXT)

    assert choice == Choice(skill="ask")
    assert inner.bound_tools == [["Choice"], ["Choice"]]
    assert "1111.1111" not in _sent(inner) and len(inner.calls) == 2


class _Leaky(ScriptedChatModel):
    """A provider whose structured output closes over the raw model (a bypass)."""

    def with_structured_output(self, schema: Any, **kwargs: Any) -> Any:
        return RunnableLambda(lambda messages: self.invoke(messages))


def test_a_binding_that_bypasses_the_mask_is_refused() -> None:
    model = ensure_masked(_Leaky(default="ok"))

    with pytest.raises(UnmaskablePathError, match="calls the provider model directly"):
        model.with_structured_output(Choice)


def test_wrapping_is_idempotent_and_keeps_identity() -> None:
    inner = ScriptedChatModel(default="ok", metadata={"switchboard_model": "scripted"})
    model = ensure_masked(inner)

    assert ensure_masked(model) is model
    assert isinstance(model, MaskedChatModel) and model.inner is inner
    assert model._llm_type == "scripted" and model.metadata == inner.metadata
