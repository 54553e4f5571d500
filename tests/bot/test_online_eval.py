"""Online evaluation end to end: a production turn through the real app, runtime and run
queue is sampled (a share of turns, every 👎), scored afterwards by the judge on the
skill's dataset rubrics, stored with the run, and counted in ``/metrics`` — on SQLite with
the embedded queue and on PostgreSQL with Procrastinate's shared queue."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from sqlalchemy import func, select

from evals.dataset import load_dataset
from skills.spec import builtin_dir
from storage.models import RunSample
from storage.scores import Sample, ScoreStore
from switchboard.testing import ScriptedChatModel, reply, tool_call
from tests.bot.conftest import BotEnv, BotFactory

CARD = "4111 1111 1111 1111"
ASK_RUBRICS = [r.name for r in load_dataset(builtin_dir() / "ask.eval.yaml").online.rubrics]


def _judge(score: float) -> ScriptedChatModel:
    return ScriptedChatModel(default=tool_call("score", reasoning="Fair.", score=score))


async def _settled(env: BotEnv, run_id: str, timeout: float = 30.0) -> Sample:
    store = ScoreStore(sessions=env.services.sessions)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        sample = await store.get(run_id)
        if sample is not None and sample.status != "pending":
            return sample
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"run {run_id} not scored in {timeout} s: {sample}")
        await asyncio.sleep(0.1)


def _feedback_button(answer: dict[str, Any], index: int) -> dict[str, Any]:
    element: dict[str, Any] = next(b for b in answer["blocks"] if b["type"] == "actions")[
        "elements"
    ][index]
    return element


def _click(answer: dict[str, Any], button: dict[str, Any], user: str) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": "T0FAKE"},
        "user": {"id": user},
        "channel": {"id": "C0GENERAL"},
        "message": answer,
        "actions": [
            {
                "action_id": button["action_id"],
                "value": button["value"],
                "type": "button",
                "block_id": "feedback",
                "action_ts": "1.2",
            }
        ],
    }


def _seen_by(model: ScriptedChatModel) -> str:
    return "\n".join(str(m.content) for call in model.calls for m in call)


async def _samples(env: BotEnv) -> int:
    async with env.services.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(RunSample)) or 0)


async def test_a_sampled_turn_is_scored_after_its_answer(make_bot: BotFactory) -> None:
    envs: list[BotEnv] = []
    answered_first: list[bool] = []

    def grade(_messages: list[BaseMessage]) -> AIMessage:
        # When the judge runs, the person already has the answer: scoring is not on its path.
        answered_first.append(any("ends in 1111" in text for text in envs[0].answer_texts()))
        return tool_call("score", reasoning="Direct and grounded.", score=0.9)

    judge = ScriptedChatModel([grade] * len(ASK_RUBRICS))
    env = await make_bot(
        {"offline": ScriptedChatModel([reply("Your card ends in 1111; nothing else found.")]),
         "judge": judge},
        SWITCHBOARD_EVAL_SAMPLE="100%",
        SWITCHBOARD_JUDGE_MODEL="judge",
    )  # fmt: skip
    envs.append(env)
    _, ts = await env.mention(f"ask hi, my card is {CARD}")
    await env.idle()
    answer = env.replies("C0GENERAL", ts)[0]
    assert "1111" in answer["text"]
    run_id = str(_feedback_button(answer, 0)["value"]).partition("|")[0]

    sample = await _settled(env, run_id)
    assert (sample.status, sample.reason, sample.thumbs_down) == ("scored", "share", False)
    assert answered_first == [True] * len(ASK_RUBRICS)
    # Stored and judged masked: the request as the PII masking produces it, never raw.
    assert sample.request == "hi, my card is [card ****1111]"
    assert sample.answer == "Your card ends in 1111; nothing else found."
    seen = _seen_by(judge)
    assert "[card ****1111]" in seen and CARD not in seen and "4111111111111111" not in seen
    scores = await ScoreStore(sessions=env.services.sessions).scores(run_id)
    assert sorted(s.rubric for s in scores) == sorted(ASK_RUBRICS)
    assert all(s.score == 0.9 and s.judge_model == "judge" for s in scores)
    # grounded's threshold is 0.8, answers-the-question's the default 0.7: both pass.
    assert all(s.passed for s in scores)
    async with env.services.sessions() as session:
        raw = [row.request + row.answer for row in await session.scalars(select(RunSample))]
    assert raw and all(CARD not in text for text in raw)

    metrics = env.bot.metrics.render().decode()
    assert 'switchboard_online_samples_total{reason="share",skill="ask"} 1.0' in metrics
    assert 'switchboard_online_scored_total{skill="ask",verdict="pass"} 1.0' in metrics
    assert 'switchboard_online_score_count{rubric="grounded",skill="ask"} 1.0' in metrics


async def test_thumbs_down_is_always_sampled_and_share_zero_samples_nothing(
    make_bot: BotFactory,
) -> None:
    judge = _judge(0.3)

    def answer(messages: list[BaseMessage]) -> AIMessage:  # the two threads may run at once
        office = "office" in str(messages[-1].content)
        return reply("The office opens at 9." if office else "Lunch is at noon.")

    env = await make_bot(
        {"offline": ScriptedChatModel([answer, answer]), "judge": judge},
        SWITCHBOARD_JUDGE_MODEL="judge",
    )  # share unset: 0, only 👎
    _, first = await env.mention("ask when does the office open?")
    _, second = await env.mention("ask when is lunch?")
    await env.idle()
    assert await _samples(env) == 0  # no share: answered turns are not sampled

    one = env.replies("C0GENERAL", first)[0]
    two = env.replies("C0GENERAL", second)[0]
    await env.action(_click(two, _feedback_button(two, 0), "U0CAROL"))  # 👍: not sampled
    await env.action(_click(one, _feedback_button(one, 1), "U0CAROL"))  # 👎: sampled
    await env.action(_click(one, _feedback_button(one, 1), "U0DEV"))  # a second 👎: once
    await env.idle()
    run_id = str(_feedback_button(one, 1)["value"]).partition("|")[0]
    sample = await _settled(env, run_id)
    assert (sample.reason, sample.thumbs_down, sample.status) == ("feedback", True, "scored")
    assert sample.request == "when does the office open?"
    assert sample.answer == "The office opens at 9."
    assert await _samples(env) == 1
    scores = await ScoreStore(sessions=env.services.sessions).scores(run_id)
    assert scores and not any(s.passed for s in scores)  # 0.3 is under every threshold
    judged: list[BaseMessage] = judge.calls[0]
    assert "when does the office open?" in str(judged[-1].content)
    metrics = env.bot.metrics.render().decode()
    assert 'switchboard_online_samples_total{reason="feedback",skill="ask"} 1.0' in metrics
    assert 'switchboard_online_scored_total{skill="ask",verdict="fail"} 1.0' in metrics


async def test_without_a_judge_samples_are_counted_unscored(make_bot: BotFactory) -> None:
    skill_model = ScriptedChatModel([reply("Hello."), reply("Hi again.")])  # no 3rd call
    env = await make_bot({"offline": skill_model}, SWITCHBOARD_EVAL_SAMPLE="1")  # no judge
    _, ts = await env.mention("ask hello")
    await env.idle()
    answer = env.replies("C0GENERAL", ts)[0]
    run_id = str(_feedback_button(answer, 0)["value"]).partition("|")[0]
    sample = await _settled(env, run_id)
    assert sample.status == "unscored" and "SWITCHBOARD_JUDGE_MODEL" in (sample.detail or "")
    assert await ScoreStore(sessions=env.services.sessions).scores(run_id) == []
    assert len(skill_model.calls) == 1  # the skill's model was not asked to judge


async def test_the_offline_model_does_not_judge(make_bot: BotFactory) -> None:
    offline = await make_bot(
        {"scripted": ScriptedChatModel([reply("Hello.")])},  # any other name: offline
        SWITCHBOARD_MODEL="scripted",
        SWITCHBOARD_EVAL_SAMPLE="1",
        SWITCHBOARD_JUDGE_MODEL="offline",  # the offline model cannot judge
    )
    _, ts = await offline.mention("ask hello")
    await offline.idle()
    answer = offline.replies("C0GENERAL", ts)[0]
    run_id = str(_feedback_button(answer, 0)["value"]).partition("|")[0]
    assert (await _settled(offline, run_id)).status == "unscored"
