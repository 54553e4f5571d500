"""Online evaluation sends production turns to one more model — the judge — and stores them:
no card number, IBAN or e-mail may reach either.

The attack: people write personal data in every spelling the detector knows of, the bot
quotes it back, and someone gives the answer a 👎 (which always sends it to the judge).
The judge is a real OpenAI client against a local OpenAI-compatible server, so what is
checked is what would leave the machine, with the independent checker of
``test_no_pan_to_any_model``; the stored samples are checked the same way. Positive
control: the judge was called, saw the masked labels, and the scores were stored.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from storage.models import RunSample
from storage.scores import ScoreStore
from tests.bot.conftest import BotFactory
from tests.fakes.openai_server import FakeOpenAIServer
from tests.security.test_no_pan_to_any_model import CORPUS, Provider, personal_data


@pytest.fixture
def provider() -> Iterator[Provider]:
    with FakeOpenAIServer() as server:
        yield Provider(server)


async def test_no_personal_data_reaches_the_online_judge_or_the_samples(
    make_bot: BotFactory, provider: Provider
) -> None:
    env = await make_bot(
        provider.factory, SWITCHBOARD_EVAL_SAMPLE="1", SWITCHBOARD_JUDGE_MODEL="judge"
    )
    _, ts = await env.mention(f"please help, {CORPUS}")
    await env.message(f"in private: {CORPUS}", channel="D0SAM", channel_type="im")
    await env.idle()
    answer = env.replies("C0GENERAL", ts)[0]
    button = next(b for b in answer["blocks"] if b["type"] == "actions")["elements"][1]
    click = {
        "type": "block_actions",
        "team": {"id": "T0FAKE"},
        "user": {"id": "U0CAROL"},
        "channel": {"id": "C0GENERAL"},
        "message": {**answer, "text": f"{answer['text']} {CORPUS}"},  # a forged answer text
        "actions": [{**button, "block_id": "feedback", "action_ts": "1.2"}],
    }
    assert (await env.action(click)).status_code == 200
    await env.idle()
    store = ScoreStore(sessions=env.services.sessions)
    for _ in range(200):
        async with env.services.sessions() as session:
            rows = list(await session.scalars(select(RunSample)))
        if len(rows) == 2 and all(row.status != "pending" for row in rows):
            break
        await asyncio.sleep(0.1)
    assert sorted(row.status for row in rows) == ["scored", "scored"]
    assert any(row.thumbs_down for row in rows)

    judged = provider.requests("judge")
    leaks = {
        f"judge #{number}": found
        for number, request in enumerate(judged, 1)
        if (found := personal_data(request.body))
    }
    stored = {
        row.run_id: found
        for row in rows
        if (found := personal_data({"request": row.request, "answer": row.answer}))
    }
    assert leaks == {} and stored == {}
    # positive controls: the judge graded both turns and saw that a card was mentioned
    assert len(judged) >= 2 and "[card ****1111" in json.dumps([r.body for r in judged])
    for row in rows:
        assert await store.scores(row.run_id)
