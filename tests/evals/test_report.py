"""Reports, the regression gate and the command line."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from evals.cli import EvalOptions, UsageProblem, eval_app, register, run_evaluation
from evals.report import render_html
from evals.results import AttemptResult, CaseResult, EvalRun, compare, estimate_cost
from evals.scorers import CheckResult
from skills.models.offline import OfflineChatModel
from switchboard.cli import eval_host
from switchboard.runtime import eval_runtimes
from switchboard.settings import Settings


def case(case_id: str, passed: bool, *, skill: str = "refunds", latency: float = 10.0,
         known: str | None = None) -> CaseResult:  # fmt: skip
    check = CheckResult("contains", "contains 'x'", passed, "" if passed else "not found")
    attempt = AttemptResult(
        passed=passed,
        outcome="reply",
        route=skill,
        answer=f"answer <b>{case_id}</b>",
        calls=[{"name": "lookup_order", "args": {"order_id": "1"}, "status": "ok"}],
        checks=[CheckResult("route", f"routed to {skill}", True), check],
        latency_ms=latency,
        input_tokens=100,
        output_tokens=20,
    )
    return CaseResult(
        skill=skill,
        dataset=f"{skill}.eval.yaml",
        case_id=case_id,
        message=f"{skill} {case_id}",
        description="",
        expected_route=skill,
        expected_trajectory=['lookup_order(order_id="1")'],
        trajectory_mode="exact",
        attempts=[attempt],
        line=7,
        known_issue=known,
    )


def run_of(*cases: CaseResult) -> EvalRun:
    return EvalRun(
        started_at="2025-05-14T12:00:00+00:00",
        model="offline",
        judge_model=None,
        repeat=1,
        cases=list(cases),
    )


def test_summary_numbers() -> None:
    run = run_of(
        case("a", True, latency=10),
        case("b", False, latency=30),
        case("c", True, skill="ask", latency=20),
        case("d", False, skill="ask", known="tracked"),
    )
    refunds, ask = sorted(run.summaries(), key=lambda s: s.skill, reverse=True)
    assert (refunds.cases, refunds.passed, refunds.pass_rate) == (2, 1, 0.5)
    assert (ask.cases, ask.passed, ask.pass_rate, ask.known_issues) == (2, 1, 1.0, 1)
    assert refunds.route_accuracy == 1.0 and refunds.latency_p95_ms == 30
    assert refunds.input_tokens == 200 and refunds.cost_usd == 0.0
    assert [c.key for c in run.failures] == ["refunds/b"]


def test_cost_table_uses_the_longest_prefix() -> None:
    assert estimate_cost("offline", 10_000, 10_000) == 0.0
    mini = estimate_cost("openai:gpt-4.1-mini", 1_000_000, 1_000_000)
    full = estimate_cost("openai:gpt-4.1", 1_000_000, 1_000_000)
    assert mini is not None and full is not None and mini < full
    assert estimate_cost("someprovider:unknown", 1, 1) is None


def test_html_report_is_self_contained_and_lists_every_case() -> None:
    cases = [case(f"c{i}", i % 3 != 0) for i in range(7)] + [case("q", True, skill="ask")]
    page = render_html(run_of(*cases))
    for item in cases:
        assert f'id="{item.key}"' in page
    assert page.count('<details class="case') == len(cases)
    assert "<svg" in page and "Pass rate by skill" in page and "Latency p95" in page
    assert "answer &lt;b&gt;c1&lt;/b&gt;" in page  # escaped, never raw HTML
    assert not re.search(r"<(link|script)[^>]+(src|href)=", page)  # no external assets
    assert "not found" in page and "lookup_order" in page


def test_gate_passes_when_nothing_regressed() -> None:
    baseline = run_of(case("a", True), case("b", False)).to_json()
    verdict = compare(baseline, run_of(case("a", True), case("b", True)), threshold=0.05)
    assert not verdict.failed and verdict.newly_failing == ()


def test_gate_fails_when_a_passing_case_fails() -> None:
    baseline = run_of(*(case(f"c{i}", True) for i in range(40))).to_json()
    now = run_of(*(case(f"c{i}", i != 3) for i in range(40)))  # 97.5%: within threshold
    verdict = compare(baseline, now, threshold=0.05)
    assert verdict.failed and verdict.newly_failing == ("refunds/c3",)
    assert not verdict.dropped


def test_gate_fails_when_the_pass_rate_drops_beyond_the_threshold() -> None:
    baseline = run_of(case("a", True), case("b", False), case("c", True), case("d", False))
    # a and c now fail, b and d now pass: no net change, but passing cases regressed
    swapped = run_of(case("a", False), case("b", True), case("c", False), case("d", True))
    assert compare(baseline.to_json(), swapped, threshold=0.5).newly_failing
    worse = run_of(case("a", True), case("b", False), case("c", False), case("d", False))
    verdict = compare(baseline.to_json(), worse, threshold=0.2)
    assert verdict.dropped and verdict.failed
    lenient = compare(baseline.to_json(), worse, threshold=0.3)
    assert not lenient.dropped


DATASET = """\
skill: ask
cases:
  - id: greet
    message: hello there
    script: ["Hi there! How can I help?"]
    expect: {answer: {contains: ["Hi there"]}}
  - id: clock
    message: what's the date today?
    script:
      - {call: time_now}
      - {reply: "Today is 2025-05-14.", sees: ["2025-05-14"]}
    expect: {trajectory: [{name: time_now}], answer: {contains: ["2025-05-14"]}}
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


async def _evaluate(tmp_path: Path, dataset: Path, **options: object) -> tuple[EvalRun, int]:
    settings = Settings.from_env({})
    return await run_evaluation(
        EvalOptions(datasets=[dataset], out=tmp_path / "out", progress=False, **options),  # type: ignore[arg-type]
        settings=settings,
        runtimes=eval_runtimes(settings),
        model_factory=lambda _name: OfflineChatModel(),
        console=Console(file=open(tmp_path / "console.txt", "w"), width=160),
    )


async def test_run_evaluation_writes_reports_and_gates(tmp_path: Path) -> None:
    good = _write(tmp_path / "ask.eval.yaml", DATASET)
    run, status = await _evaluate(tmp_path, good, save_baseline=tmp_path / "base.json")
    assert status == 0 and all(c.passed for c in run.cases)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {c["key"] for c in results["cases"]} == {"ask/greet", "ask/clock"}
    assert results["summary"]["skills"]["ask"]["pass_rate"] == 1.0
    report = (tmp_path / "out" / "report.html").read_text()
    assert 'id="ask/greet"' in report and 'id="ask/clock"' in report
    assert (tmp_path / "base.json").exists()

    # the same dataset, with the clock case now expecting something else: a regression
    broken = _write(tmp_path / "ask.eval.yaml", DATASET.replace("2025-05-14", "1999-01-01"))
    _, status = await _evaluate(tmp_path, broken, baseline=tmp_path / "base.json")
    assert status == 1
    assert "regression: ask/clock" in (tmp_path / "console.txt").read_text()

    fixed = _write(tmp_path / "ask.eval.yaml", DATASET)
    _, status = await _evaluate(tmp_path, fixed, baseline=tmp_path / "base.json")
    assert status == 0


async def test_failures_without_a_baseline_exit_1(tmp_path: Path) -> None:
    broken = _write(tmp_path / "ask.eval.yaml", DATASET.replace("2025-05-14", "1999-01-01"))
    run, status = await _evaluate(tmp_path, broken)
    assert status == 1 and [c.key for c in run.failures] == ["ask/clock"]


async def test_unknown_skill_and_bad_baseline_are_usage_problems(tmp_path: Path) -> None:
    good = _write(tmp_path / "ask.eval.yaml", DATASET)
    with pytest.raises(UsageProblem, match="no dataset for nosuch"):
        await _evaluate(tmp_path, good, skills=["nosuch"])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UsageProblem, match="not an evaluation results file"):
        await _evaluate(tmp_path, good, baseline=tmp_path / "bad.json")


def test_cli_validate_and_default_command(tmp_path: Path) -> None:
    cli = CliRunner()
    evals = eval_app(eval_host())
    bad = _write(tmp_path / "bad.eval.yaml", "skill: ask\ncases:\n  - {id: a, mesage: hi}\n")
    result = cli.invoke(evals, ["validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:3 cases[0].mesage: unknown key" in result.output

    good = _write(tmp_path / "ask.eval.yaml", DATASET)
    result = cli.invoke(
        evals,
        ["ask", "--model", "offline", "--dataset", str(good), "--out", str(tmp_path / "o")],
        env={},
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "report.html").exists()
    assert "ask" in result.output and "100%" in result.output

    result = cli.invoke(evals, ["--dataset", str(bad)])
    assert result.exit_code == 2 and "mesage: unknown key" in result.output


def test_mounted_under_a_root_app_as_the_lead_will(tmp_path: Path) -> None:
    """`register(app, host=…)` keeps `switchboard eval [SKILL…]` working."""
    import typer

    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """root"""

    register(root, host=eval_host())
    cli = CliRunner()
    assert "import-feedback" in cli.invoke(root, ["eval", "--help"]).output
    good = _write(tmp_path / "ask.eval.yaml", DATASET)
    result = cli.invoke(
        root,
        ["eval", "ask", "--model", "offline", "--dataset", str(good), "--out", str(tmp_path / "o")],
        env={},
    )
    assert result.exit_code == 0, result.output
    result = cli.invoke(root, ["eval", "validate", str(good)])
    assert result.exit_code == 0 and "2 cases for ask" in result.output
