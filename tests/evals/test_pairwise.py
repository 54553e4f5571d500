"""Pairwise comparison: two variants on the same cases, a judge's win/tie/loss, cost and
latency side by side in the report."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from rich.console import Console

from evals.cli import UsageProblem, run_comparison
from evals.pairwise import ModelPairwiseJudge
from skills.spec import builtin_dir
from switchboard.runtime import eval_runtimes
from switchboard.settings import Settings
from tests.fakes.chat import ScriptedChatModel, tool_call

DATASET = """\
skill: ask
cases:
  - {id: one, skill: ask, message: Draft a polite reply declining Friday's meeting.}
  - {id: chargeback, skill: ask, message: "Explain what a chargeback is, briefly."}
  - {id: three, skill: ask, message: "What's a SEPA batch?", expect: {rubric: Short and correct.}}
"""


def _judge_by_content(messages: list[BaseMessage]) -> AIMessage:
    """Prefers the answer that says GOOD, wherever the comparison puts it."""
    text = str(messages[-1].content)
    first = text.split("<first>")[1].split("</first>")[0]
    second = text.split("<second>")[1].split("</second>")[0]
    if "GOOD" in first and "GOOD" in second:
        winner = "tie"
    else:
        winner = "first" if "GOOD" in first else "second"
    return tool_call("_Preference", reasoning=f"picked {winner}", winner=winner)


async def test_compare_reports_win_tie_loss_cost_and_latency(tmp_path: Path) -> None:
    data = tmp_path / "ask.eval.yaml"
    data.write_text(DATASET)
    variant_a = ScriptedChatModel(default="GOOD: here is a careful answer.")
    variant_b = ScriptedChatModel(
        [AIMessage("meh"), AIMessage("GOOD as well"), AIMessage("meh again")]
    )
    models: dict[str, BaseChatModel] = {"model-a": variant_a, "model-b": variant_b}
    judge_model = ScriptedChatModel([_judge_by_content] * 3)
    settings = Settings.from_env({})
    with open(tmp_path / "out.txt", "w") as printed:
        comparison = await run_comparison(
            a="model-a",
            b="model-b",
            skills=[],
            datasets=[data],
            settings=settings,
            runtimes=eval_runtimes(settings),
            model_factory=lambda name: models[name],
            judge=ModelPairwiseJudge(model=judge_model, model_name="judge"),
            console=Console(file=printed, width=160),
            out=tmp_path / "cmp",
            concurrency=1,
        )
    outcomes = {c.key: c.outcome for c in comparison.cases}
    assert sorted(outcomes.values()) == ["tie", "win", "win"]
    assert comparison.counts() == {"win": 2, "tie": 1, "loss": 0}
    # the judge saw A first for some cases and second for others (position bias)
    orders = {"GOOD: here" in str(m[-1].content).split("<second>")[0] for m in judge_model.calls}
    assert orders == {True, False}
    # the rubric reached the judge
    assert any("Short and correct." in str(m[0].content) for m in judge_model.calls)
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert saved["a_wins_ties_losses"] == {"win": 2, "tie": 1, "loss": 0}
    page = (tmp_path / "cmp" / "compare.html").read_text()
    for label in ("pairwise", "pass rate", "cost", "latency p50 ms", "latency p95 ms"):
        assert f"<td>{label}</td>" in page
    assert "A model-a" in page and "B model-b" in page and page.count("<details") == 3
    assert "2 win · 1 tie · 0 loss" in (tmp_path / "out.txt").read_text()


async def test_compare_a_new_spec_version_against_the_served_one(tmp_path: Path) -> None:
    """A variant may be a spec file: it replaces the served skill of its name, on the skill's
    own model. The served ``ask`` against a v2 whose instructions change the answers; the
    models read the instructions, so only v2 answers GOOD."""
    data = tmp_path / "ask.eval.yaml"
    data.write_text(DATASET)
    served = (Path(builtin_dir()) / "ask.yaml").read_text()
    assert "\ninstructions: |\n" in served
    v2 = tmp_path / "ask-v2.yaml"
    v2.write_text(
        served.replace("\ninstructions: |\n", "\nversion: '2'\ninstructions: |\n  Say GOOD.\n", 1)
    )

    def answers(messages: list[BaseMessage]) -> AIMessage:
        system = " ".join(str(m.content) for m in messages if m.type == "system")
        return AIMessage("GOOD: v2 answer" if "Say GOOD." in system else "served answer")

    model = ScriptedChatModel([answers] * 6)
    judge_model = ScriptedChatModel([_judge_by_content] * 3)
    settings = Settings.from_env({"SWITCHBOARD_MODEL": "skill-model"})
    with open(tmp_path / "out.txt", "w") as printed:
        comparison = await run_comparison(
            a=str(v2),
            b=str(Path(builtin_dir()) / "ask.yaml"),  # the served version, as a file
            skills=[],
            datasets=[data],
            settings=settings,
            runtimes=eval_runtimes(settings),
            model_factory=lambda name: model,
            judge=ModelPairwiseJudge(model=judge_model, model_name="judge"),
            console=Console(file=printed, width=160),
            out=tmp_path / "cmp",
            concurrency=1,
        )
    assert comparison.counts() == {"win": 3, "tie": 0, "loss": 0}


async def test_a_spec_variant_with_an_error_stops_before_any_case(tmp_path: Path) -> None:
    data = tmp_path / "ask.eval.yaml"
    data.write_text(DATASET)
    broken = tmp_path / "ask-v2.yaml"
    broken.write_text("name: ask\ndescription: x\ninstructions: y\ntoolz: []\n")
    model = ScriptedChatModel(default="never asked")
    settings = Settings.from_env({})
    with pytest.raises(UsageProblem) as info:
        await run_comparison(
            a=str(broken),
            b="model-b",
            skills=[],
            datasets=[data],
            settings=settings,
            runtimes=eval_runtimes(settings),
            model_factory=lambda name: model,
            judge=ModelPairwiseJudge(model=model, model_name="judge"),
            console=Console(file=io.StringIO(), width=160),
            out=tmp_path / "cmp",
        )
    assert str(info.value).startswith(f"{broken}:4 toolz: unknown key")
    assert model.calls == []
