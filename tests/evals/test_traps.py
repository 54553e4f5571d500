"""The evaluation traps a new user fell into, one test each: a dataset whose skill is not
loaded, the route failure naming the wrong skill, `eval stats` blind to the sandbox,
`import-feedback` losing the request, and two pass rates for one run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from evals.cli import SANDBOX_DATABASE, EvalOptions, eval_app, run_evaluation
from evals.dataset import load_dataset_text
from evals.feedback import draft_cases, render_drafts
from evals.results import AttemptResult, CaseResult, EvalRun, compare
from skills.models.offline import OfflineChatModel
from storage.feedback import FeedbackStore
from storage.sql import create_engine, session_factory, upgrade
from switchboard.cli import eval_host
from switchboard.runtime import eval_runtimes
from switchboard.settings import Settings


def test_a_dataset_for_a_skill_that_is_not_loaded_exits_2_naming_it(tmp_path: Path) -> None:
    data = tmp_path / "status.eval.yaml"
    data.write_text("skill: status\ncases:\n  - {id: a, message: 'is the API up?'}\n")
    result = CliRunner().invoke(eval_app(eval_host()), ["--dataset", str(data)], env={})
    assert result.exit_code == 2, result.output
    assert "the skill 'status' is not loaded" in result.output
    assert "SWITCHBOARD_SKILLS_DIR is not set" in result.output  # where it looked


async def test_a_failed_route_prints_the_skill_that_actually_answered(tmp_path: Path) -> None:
    data = tmp_path / "ask.eval.yaml"
    data.write_text(
        "skill: ask\ncases:\n"
        "  - id: named\n    message: 'summarize: what was said here?'\n"
        "    script: [Nothing yet.]\n    expect: {route: ask}\n"
    )
    settings = Settings.from_env({})
    with open(tmp_path / "console.txt", "w") as out:
        _, status = await run_evaluation(
            EvalOptions(datasets=[data], out=tmp_path / "o", progress=False),
            settings=settings,
            runtimes=eval_runtimes(settings),
            model_factory=lambda _name: OfflineChatModel(),
            console=Console(file=out, width=200),
        )
    assert status == 1
    line = next(x for x in (tmp_path / "console.txt").read_text().splitlines() if "FAILED" in x)
    assert "route ask — answered by summarize" in line


async def test_feedback_keeps_the_masked_request_for_drafts(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    store = FeedbackStore(sessions=sessions)
    await store.record(
        skill="refunds",
        thread_id="T0:C0SUPPORT:1.0",
        channel_id="C0SUPPORT",
        message_ts="2.0",
        user_id="U0SAM",
        value="down",
        request="refund order 1001, card [card ****1111]",
    )
    # a second click keeps it (and never needs it again)
    await store.record(
        skill="refunds", thread_id="T0:C0SUPPORT:1.0", channel_id="C0SUPPORT",
        message_ts="2.0", user_id="U0SAM", value="down",
    )  # fmt: skip
    rows = await FeedbackStore(sessions=sessions).rows(value="down")
    assert [r.request for r in rows] == ["refund order 1001, card [card ****1111]"]

    async def expired(_thread: str) -> list:
        return []  # the thread's memory is gone

    drafts = await draft_cases(rows, history=expired)
    text = render_drafts("refunds", drafts, since=datetime(2025, 1, 1, tzinfo=UTC))
    (case,) = load_dataset_text(text, filename="refunds.feedback.eval.yaml").cases
    assert case.message == "refund order 1001, card [card ****1111]"
    assert "TODO: the request" not in text and "stored with the feedback" in case.notes


def test_eval_stats_reads_the_sandbox_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    monkeypatch.chdir(tmp_path)
    cli = CliRunner()
    evals = eval_app(eval_host())
    result = cli.invoke(evals, ["stats", "--sandbox"], env={})
    assert result.exit_code == 2 and "no sandbox database" in result.output

    async def seed() -> None:
        SANDBOX_DATABASE.parent.mkdir(parents=True)
        url = f"sqlite+aiosqlite:///{SANDBOX_DATABASE}"
        await upgrade(url)
        engine = create_engine(url)
        await FeedbackStore(sessions=session_factory(engine)).record(
            skill="digest", thread_id="T0:C0:1.0", channel_id="C0", message_ts="1.1",
            user_id="U0SAM", value="up",
        )  # fmt: skip
        await engine.dispose()

    asyncio.run(seed())
    plain = cli.invoke(evals, ["stats"], env={})
    assert plain.exit_code == 0
    assert "the sandbox keeps its feedback in .switchboard-sandbox/sandbox.db" in plain.output
    assert "--sandbox" in plain.output
    sandbox = cli.invoke(evals, ["stats", "--sandbox"], env={})
    assert sandbox.exit_code == 0 and "digest" in sandbox.output and "100%" in sandbox.output


def _case(key: str, passed: bool, known: str | None = None) -> CaseResult:
    attempt = AttemptResult(passed, "reply", "ask", "", [], [], 1.0)
    return CaseResult("ask", "ask.eval.yaml", key, "hi", "", "ask", [], None, [attempt],
                      known_issue=known)  # fmt: skip


def test_the_gate_and_the_table_agree_about_known_issues() -> None:
    def run(*cases: CaseResult) -> EvalRun:
        return EvalRun("2025-05-14T12:00:00+00:00", "m", None, 1, list(cases))

    baseline = run(_case("a", True), _case("b", True), _case("k", False, known="tracked"))
    now = run(_case("a", True), _case("b", False), _case("k", False, known="tracked"))
    verdict = compare(baseline.to_json(), now, threshold=0.0)
    assert verdict.baseline_pass_rate == baseline.overall().pass_rate == 1.0
    assert verdict.pass_rate == now.overall().pass_rate == 0.5
    assert verdict.newly_failing == ("ask/b",)
    # a case that passed and now fails as a tracked known issue is not a regression
    tracked = run(_case("a", True), _case("b", False, known="tracked"), _case("k", False, "t"))
    verdict = compare(baseline.to_json(), tracked, threshold=0.0)
    assert verdict.newly_failing == () and verdict.pass_rate == tracked.overall().pass_rate


def test_mode_options_that_contradict_each_other_are_usage_errors(tmp_path: Path) -> None:
    data = tmp_path / "ask.eval.yaml"
    data.write_text("skill: ask\ncases:\n  - {id: a, message: hello, script: [Hi.]}\n")
    evals = eval_app(eval_host())
    cli = CliRunner()
    for args, message in [
        (["--record", "--replay"], "--record and --replay exclude each other"),
        (["--record", "--mode", "wiring"], "--record runs in quality mode"),
        (["--replay", "--mode", "quality"], "--replay runs in wiring mode"),
        (["--record", "--model", "offline", "--mode", "quality"], "records OpenAI-compatible"),
        (["--mode", "sideways"], "--mode: expected quality or wiring"),
    ]:
        result = cli.invoke(evals, [*args, "--dataset", str(data), "--out", str(tmp_path)], env={})
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    # the offline model defaults to wiring mode, and says so
    result = cli.invoke(evals, ["--dataset", str(data), "--out", str(tmp_path / "w")], env={})
    assert result.exit_code == 0 and "wiring mode (scripted model turns" in result.output
