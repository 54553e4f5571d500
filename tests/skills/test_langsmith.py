"""LangSmith opt-in: runs reach a (local, recording) LangSmith API masked, with metadata."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import langsmith.utils
import pytest
from langsmith import run_trees

from skills import tracing
from skills.context import Actor, ThreadRef
from skills.outcomes import Reply
from tests.fakes.chat import ScriptedChatModel, reply
from tests.fakes.langsmith_api import FakeLangSmith
from tests.skills.conftest import RuntimeKit

PAN = "4111 1111 1111 1111"
SAM = Actor(user_id="U0SAM", name="sam")
THREAD = ThreadRef(team="T0", channel="C0SUPPORT", thread_ts="1700000000.000400")


@pytest.fixture
def langsmith_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLangSmith]:
    with FakeLangSmith() as fake:
        for name, value in {
            "LANGSMITH_TRACING": "true",
            "LANGSMITH_ENDPOINT": fake.url,
            "LANGSMITH_API_KEY": "lsv2-test-key",
            "LANGSMITH_PROJECT": "switchboard-test",
        }.items():
            monkeypatch.setenv(name, value)
        langsmith.utils.get_env_var.cache_clear()  # langsmith caches what it read
        langsmith.utils.get_tracer_project.cache_clear()
        try:
            yield fake
        finally:
            monkeypatch.undo()
            langsmith.utils.get_env_var.cache_clear()
            langsmith.utils.get_tracer_project.cache_clear()
            run_trees.configure(client=None)


def test_langsmith_is_off_unless_asked() -> None:
    assert tracing.setup_langsmith({"LANGSMITH_API_KEY": "x"}) is None


async def test_runs_reach_langsmith_masked_with_skill_thread_and_run_id(
    kit: RuntimeKit, langsmith_api: FakeLangSmith
) -> None:
    import os

    client = tracing.setup_langsmith(os.environ)
    assert client is not None
    try:
        await _check_runs(kit, langsmith_api, client)
    finally:
        client.close(timeout=5)  # stop its background thread: later tests measure memory


async def _check_runs(kit: RuntimeKit, langsmith_api: FakeLangSmith, client: Any) -> None:
    # A function, so the card is not in the fake model's own repr (its "serialized" form).
    model = ScriptedChatModel([lambda _messages: reply(f"Noted, your card {PAN} is on file.")])
    runtime = kit.runtime({"offline": model})
    outcome = await runtime.run(
        thread=THREAD, message=f"ask my card is {PAN}, thanks", actor=SAM, skill="ask"
    )
    assert isinstance(outcome, Reply)
    client.flush()
    deadline = time.monotonic() + 10
    while b"run_id" not in langsmith_api.bodies and time.monotonic() < deadline:
        time.sleep(0.1)
        client.flush()

    sent = langsmith_api.bodies
    assert langsmith_api.requests, "nothing reached the LangSmith API"
    assert b'"skill"' in sent and b'"ask"' in sent
    assert THREAD.thread_id.encode() in sent
    assert outcome.run_id.encode() in sent
    assert b"****1111" in sent  # inputs and outputs were sent ...
    for needle in (PAN, PAN.replace(" ", ""), "1111 1111"):
        assert needle.encode() not in sent, f"{needle!r} reached LangSmith"  # ... masked
