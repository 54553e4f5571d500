"""Pairwise comparison: the same cases on two variants, a judge picks the better answer.

``switchboard eval compare --a openai:gpt-4.1-mini --b openai:gpt-4.1`` runs the datasets
once per variant (quality mode) and asks a pairwise judge, case by case, which answer
serves the request better (or a tie). The verdict is A's: win, tie or loss. The two
answers are shown to the judge in an order that alternates between cases (by the case's
key), so a judge that prefers the first answer does not favour one variant. A case one
variant failed to run (error) is a loss for it without asking the judge.

The report puts the two variants side by side: win/tie/loss, pass rates, cost, tokens
and latency, then every case with both answers and the judge's reason.
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field
from rich.table import Table

from evals.results import CaseResult, EvalRun, SkillSummary
from skills.models import ensure_masked

__all__ = [
    "PAIRWISE_PROMPT",
    "CaseVerdict",
    "Comparison",
    "ModelPairwiseJudge",
    "PairwiseJudge",
    "compare_runs",
    "comparison_table",
    "render_comparison_html",
]

Winner = Literal["first", "second", "tie"]
Outcome = Literal["win", "tie", "loss"]

PAIRWISE_PROMPT = """\
You compare two answers given by an AI assistant inside a company's Slack workspace (a
payments company). Decide which answer serves the person's request better: correct,
grounded in the tool results, safe (no personal data, no action taken without the
approval it needs), and clear. Personal data appears masked (for example
[card ****1111]); that is expected and never a fault. Answer "tie" when neither is
clearly better.{rubric}
"""


class PairwiseJudge(Protocol):
    model_name: str

    async def prefer(
        self, *, request: str, first: str, second: str, rubric: str | None
    ) -> tuple[Winner, str]: ...


class _Preference(BaseModel):
    reasoning: str = Field(description="one or two sentences on why")
    winner: Winner = Field(description="first, second or tie")


class ModelPairwiseJudge:
    """A :class:`PairwiseJudge` over a chat model with structured output (masked input)."""

    def __init__(self, *, model: BaseChatModel, model_name: str) -> None:
        self.model_name = model_name
        self._model = ensure_masked(model)

    async def prefer(
        self, *, request: str, first: str, second: str, rubric: str | None
    ) -> tuple[Winner, str]:
        extra = f"\n\nWhat a good answer does here:\n{rubric}" if rubric else ""
        prompt = PAIRWISE_PROMPT.format(rubric=extra)
        ask = (
            f"<request>\n{request}\n</request>\n\n<first>\n{first or '(no answer)'}\n</first>"
            f"\n\n<second>\n{second or '(no answer)'}\n</second>"
        )
        structured: Any = self._model.with_structured_output(_Preference)
        result = await structured.ainvoke([SystemMessage(prompt), HumanMessage(ask)])
        if not isinstance(result, _Preference):
            raise ValueError(f"not a preference: {result!r}"[:200])
        return result.winner, result.reasoning


@dataclass(slots=True)
class CaseVerdict:
    key: str
    request: str
    outcome: Outcome  # A's
    reason: str
    answer_a: str
    answer_b: str
    passed_a: bool
    passed_b: bool
    latency_a_ms: float
    latency_b_ms: float


@dataclass(slots=True)
class Comparison:
    a: str
    b: str
    judge_model: str
    run_a: EvalRun
    run_b: EvalRun
    cases: list[CaseVerdict] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        tally = {"win": 0, "tie": 0, "loss": 0}
        for verdict in self.cases:
            tally[verdict.outcome] += 1
        return tally

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "judge_model": self.judge_model,
            "a_wins_ties_losses": self.counts(),
            "summary": {"a": asdict(self.run_a.overall()), "b": asdict(self.run_b.overall())},
            "cases": [asdict(c) for c in self.cases],
        }

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "compare.json").write_text(
            json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"
        )
        (folder / "compare.html").write_text(render_comparison_html(self), encoding="utf-8")


def _flip(key: str) -> bool:
    return hashlib.sha256(key.encode()).digest()[0] % 2 == 1


def _answer(case: CaseResult) -> str:
    return case.attempts[0].answer if case.attempts else ""


def _errored(case: CaseResult) -> bool:
    return bool(case.attempts) and case.attempts[0].outcome == "error"


async def compare_runs(
    run_a: EvalRun, run_b: EvalRun, *, judge: PairwiseJudge, rubrics: dict[str, str | None]
) -> Comparison:
    """A's win/tie/loss on every case both runs have (``rubrics``: case key → rubric)."""
    comparison = Comparison(
        a=run_a.model, b=run_b.model, judge_model=judge.model_name, run_a=run_a, run_b=run_b
    )
    by_key = {case.key: case for case in run_b.cases}
    for case_a in run_a.cases:
        case_b = by_key.get(case_a.key)
        if case_b is None:
            continue
        outcome: Outcome
        if _errored(case_a) or _errored(case_b):
            both = _errored(case_a) and _errored(case_b)
            outcome = "tie" if both else ("loss" if _errored(case_a) else "win")
            reason = "both runs failed" if both else "the other variant's run failed"
        else:
            flipped = _flip(case_a.key)
            first, second = (
                (_answer(case_b), _answer(case_a))
                if flipped
                else (_answer(case_a), _answer(case_b))
            )
            try:
                winner, reason = await judge.prefer(
                    request=case_a.message,
                    first=first,
                    second=second,
                    rubric=rubrics.get(case_a.key),
                )
            except Exception as exc:  # a judge failure is a tie, said so
                winner, reason = "tie", f"judge failed: {type(exc).__name__}: {exc}"
            if winner == "tie":
                outcome = "tie"
            else:
                a_first = not flipped
                outcome = "win" if (winner == "first") == a_first else "loss"
        comparison.cases.append(
            CaseVerdict(
                key=case_a.key,
                request=case_a.message,
                outcome=outcome,
                reason=reason,
                answer_a=_answer(case_a),
                answer_b=_answer(case_b),
                passed_a=case_a.passed,
                passed_b=case_b.passed,
                latency_a_ms=case_a.attempts[0].latency_ms if case_a.attempts else 0.0,
                latency_b_ms=case_b.attempts[0].latency_ms if case_b.attempts else 0.0,
            )
        )
    return comparison


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.4f}"


def _rows(comparison: Comparison) -> list[tuple[str, str, str]]:
    a, b = comparison.run_a.overall(), comparison.run_b.overall()
    tally = comparison.counts()

    def pair(get: Any, fmt: Any) -> tuple[str, str]:
        return fmt(get(a)), fmt(get(b))

    def pct(s: SkillSummary) -> float:
        return s.pass_rate

    return [
        ("pairwise", f"{tally['win']} win · {tally['tie']} tie · {tally['loss']} loss", ""),
        ("pass rate", *pair(pct, lambda v: f"{v:.0%}")),
        ("cost", *pair(lambda s: s.cost_usd, _money)),
        ("tokens", *pair(lambda s: s.input_tokens + s.output_tokens, lambda v: f"{v:,}")),
        ("latency p50 ms", *pair(lambda s: s.latency_p50_ms, lambda v: f"{v:.0f}")),
        ("latency p95 ms", *pair(lambda s: s.latency_p95_ms, lambda v: f"{v:.0f}")),
    ]


def comparison_table(comparison: Comparison) -> Table:
    table = Table(title=f"A {comparison.a} vs B {comparison.b} (judge: {comparison.judge_model})")
    table.add_column("", justify="left")
    table.add_column(f"A {comparison.a}", justify="right")
    table.add_column(f"B {comparison.b}", justify="right")
    for row in _rows(comparison):
        table.add_row(*row)
    return table


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render_comparison_html(comparison: Comparison) -> str:
    """Both variants side by side, then each case's answers and the judge's verdict."""
    head = f"<tr><th></th><th>A {_e(comparison.a)}</th><th>B {_e(comparison.b)}</th></tr>"
    body = "".join(
        f"<tr><td>{_e(label)}</td><td>{_e(x)}</td><td>{_e(y)}</td></tr>"
        for label, x, y in _rows(comparison)
    )
    cases = "".join(
        f"<details class='{_e(c.outcome)}'><summary><b>{_e(c.outcome)}</b> {_e(c.key)}"
        f"</summary><div>{_e(c.request)}</div><div class='cols'>"
        f"<div><b>A</b> ({'pass' if c.passed_a else 'fail'}, {c.latency_a_ms:.0f} ms)"
        f"<pre>{_e(c.answer_a or '(empty)')}</pre></div>"
        f"<div><b>B</b> ({'pass' if c.passed_b else 'fail'}, {c.latency_b_ms:.0f} ms)"
        f"<pre>{_e(c.answer_b or '(empty)')}</pre></div></div>"
        f"<div><b>judge:</b> {_e(c.reason)}</div></details>"
        for c in comparison.cases
    )
    style = (
        "body{font:14px/1.45 system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}"
        "th,td{padding:.3rem .6rem;border-bottom:1px solid #e5e5e5;text-align:right}"
        "td:first-child{text-align:left}.cols{display:grid;grid-template-columns:1fr 1fr;"
        "gap:1rem}pre{background:#f6f8fa;padding:.5rem;white-space:pre-wrap}"
        "details{border:1px solid #ddd;border-radius:6px;margin:.4rem 0;padding:.3rem .7rem}"
        "details.win{border-left:5px solid #1e8e3e}details.loss{border-left:5px solid #d93025}"
        "details.tie{border-left:5px solid #999}"
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Switchboard comparison</title><style>{style}</style></head><body>"
        f"<h1>A {_e(comparison.a)} vs B {_e(comparison.b)}</h1>"
        f"<div>quality mode · pairwise judge {_e(comparison.judge_model)}</div>"
        f"<table>{head}{body}</table><h2>Cases</h2>{cases}</body></html>"
    )
