"""``switchboard eval``: run datasets, gate on a baseline, and learn from Slack feedback.

    switchboard eval [SKILL…] [--model M] [--judge-model M] [--repeat N] [--concurrency K]
                     [--out DIR] [--baseline FILE] [--save-baseline FILE] [--threshold 0.05]
    switchboard eval validate [PATH…]
    switchboard eval import-feedback --since 2025-05-01 [--skill S] [--out DIR]
    switchboard eval stats [--since DATE]

Exit status: 0 all good; 1 a case failed (or, with ``--baseline``, the gate failed);
2 a usage or configuration problem (bad dataset, unknown skill, bad model string).
Evaluations run on their own throw-away SQLite database and in-process Redis, so they
work on a laptop with no configuration and never touch a deployment's records.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

if TYPE_CHECKING:
    from bot.settings import Settings
    from evals.dataset import Dataset
    from evals.judge import Judge
    from evals.results import EvalRun
    from skills.runtime import ModelFactory

__all__ = ["EvalOptions", "eval_app", "run_evaluation"]


class _DefaultRunGroup(TyperGroup):
    """``switchboard eval refunds`` means ``switchboard eval run refunds``: anything that
    is not a subcommand (or help) goes to ``run``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(
    cls=_DefaultRunGroup,
    help="Evaluate skills on their datasets (*.eval.yaml); learn from Slack feedback.",
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"switchboard eval: {message}", err=True)
    raise typer.Exit(code)


def _settings() -> Settings:
    from bot.settings import ConfigError, Settings

    try:
        return Settings.from_env()
    except ConfigError as exc:
        _fail(str(exc))


# --------------------------------------------------------------------------- run


@dataclass(slots=True)
class EvalOptions:
    """What ``switchboard eval`` was asked to do."""

    skills: list[str] = field(default_factory=list)
    datasets: list[Path] = field(default_factory=list)
    model: str | None = None
    judge_model: str | None = None
    repeat: int = 1
    concurrency: int = 4
    out: Path | None = None
    baseline: Path | None = None
    save_baseline: Path | None = None
    threshold: float = 0.05
    progress: bool = True


class UsageProblem(Exception):
    """Something about the request or the configuration; exit status 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def load_datasets(
    paths: Sequence[Path], folders: Sequence[Path], skills: Sequence[str]
) -> list[Dataset]:
    """The datasets to run: ``paths`` if given, else every dataset under ``folders``,
    limited to ``skills`` when given. Raises `UsageProblem` listing every invalid file."""
    from evals.dataset import DatasetError, discover_datasets, load_dataset

    files = list(paths) or discover_datasets(folders)
    problems: list[str] = []
    datasets: list[Dataset] = []
    for path in files:
        if not path.is_file():
            problems.append(f"{path}: no such file")
            continue
        try:
            datasets.append(load_dataset(path))
        except DatasetError as exc:
            problems.extend(str(issue) for issue in exc.issues)
    if problems:
        raise UsageProblem("invalid dataset(s):\n" + "\n".join(problems))
    if skills:
        known = {d.skill for d in datasets}
        missing = [s for s in skills if s not in known]
        if missing:
            raise UsageProblem(
                f"no dataset for {', '.join(missing)}; datasets exist for "
                f"{', '.join(sorted(known)) or 'nothing'}"
            )
        datasets = [d for d in datasets if d.skill in skills]
    return datasets


async def run_evaluation(
    options: EvalOptions,
    *,
    settings: Settings,
    model_factory: ModelFactory,
    console: Console,
    judge: Judge | None = None,
) -> tuple[EvalRun, int]:
    """Run, report and gate; returns the run and the exit status."""
    from evals.report import summary_table, write_html
    from evals.results import BaselineError, compare, load_results
    from evals.runner import EvalRunner, embedded_stores
    from skills.spec import builtin_dir

    folders = [builtin_dir(), *map(Path, settings.skills_dirs)]
    datasets = load_datasets(options.datasets, folders, options.skills)
    baseline = None
    if options.baseline is not None:
        try:
            baseline = load_results(options.baseline)
        except BaselineError as exc:
            raise UsageProblem(str(exc)) from None
    model = options.model or settings.model
    total = sum(len(d.cases) for d in datasets) * options.repeat
    progress = Progress(
        TextColumn("[bold]eval"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=True,
        disable=not options.progress,
    )
    task = progress.add_task("", total=total)

    def advance(result: Any) -> None:
        label = f"{result.key} {'✓' if result.passed else '✗'}" if result is not None else ""
        progress.update(task, advance=1, description=label)

    async with embedded_stores() as stores:
        runner = EvalRunner(
            stores=stores,
            model_factory=model_factory,
            model=model,
            force_model=options.model is not None,
            judge=judge,
            repeat=options.repeat,
            concurrency=options.concurrency,
            skills_dirs=settings.skills_dirs,
            on_attempt=advance,
        )
        with progress:
            run = await runner.run(datasets)

    console.print(summary_table(run))
    out = options.out or Path("eval-results") / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run.write(out / "results.json")
    write_html(run, out / "report.html")
    console.print(f"results: {out / 'results.json'}  report: {out / 'report.html'}")
    for case in run.cases:
        if not case.passed:
            failed = {c.name for a in case.attempts for c in a.failed_checks}
            tag = "known issue" if case.known_issue else "FAILED"
            console.print(f"{tag}: {case.key} — {'; '.join(sorted(failed))}", highlight=False)
    if options.save_baseline is not None:
        run.write(options.save_baseline)
        console.print(f"baseline saved to {options.save_baseline}")
    if baseline is not None:
        verdict = compare(baseline, run, threshold=options.threshold)
        console.print(verdict.describe(), highlight=False)
        return run, 1 if verdict.failed else 0
    return run, 1 if run.failures else 0


def _model_factory(settings: Settings) -> ModelFactory:
    from langchain_core.language_models import BaseChatModel

    from skills.models import load_chat_model

    def factory(name: str) -> BaseChatModel:
        return load_chat_model(name, timeout=settings.model_timeout, env=os.environ)

    return factory


def _judge(name: str, factory: Callable[[str], Any]) -> Judge:
    from skills.models import OfflineChatModel, unmasked

    model = factory(name)
    if isinstance(unmasked(model), OfflineChatModel):
        raise UsageProblem("the offline model cannot judge; give --judge-model a real model")
    try:
        from evals.judge import RubricJudge
    except ImportError:  # pragma: no cover - openevals is a dependency
        raise UsageProblem("the judge needs openevals: pip install openevals") from None
    return RubricJudge(model=model, model_name=name)


@eval_app.command("run")
def run_command(
    skills: list[str] = typer.Argument(  # noqa: B008 - typer's declaration style
        None, metavar="[SKILL]...", help="skills to evaluate (default: every dataset)"
    ),
    model: str = typer.Option(None, "--model", help="run every skill on this model"),
    judge_model: str = typer.Option(None, "--judge-model", help="LLM judge for rubrics"),
    repeat: int = typer.Option(1, "--repeat", min=1, help="attempts per case (pass@k)"),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="cases run at once"),
    out: Path = typer.Option(None, "--out", help="folder for results.json and report.html"),  # noqa: B008
    baseline: Path = typer.Option(None, "--baseline", help="results file to compare with"),  # noqa: B008
    save_baseline: Path = typer.Option(None, "--save-baseline", help="write results here"),  # noqa: B008
    threshold: float = typer.Option(0.05, "--threshold", min=0, max=1, help="allowed drop"),
    dataset: list[Path] = typer.Option(  # noqa: B008
        None, "--dataset", help="dataset file(s) to run instead of discovering them"
    ),
) -> None:
    """Run the datasets of SKILL… (default: all) and report; see `switchboard eval --help`."""
    from bot.logs import configure_logging
    from skills.models import ModelConfigError

    settings = _settings()
    configure_logging("ERROR" if settings.log_level == "INFO" else settings.log_level)
    options = EvalOptions(
        skills=list(skills or []),
        datasets=list(dataset or []),
        model=model,
        judge_model=judge_model,
        repeat=repeat,
        concurrency=concurrency,
        out=out,
        baseline=baseline,
        save_baseline=save_baseline,
        threshold=threshold,
    )
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)  # CI logs: keep the summary table on one line a row
    factory = _model_factory(settings)
    try:
        factory(model or settings.model)  # configuration errors before the first case
        judge = _judge(judge_model, factory) if judge_model else None
        _, status = asyncio.run(
            run_evaluation(
                options, settings=settings, model_factory=factory, console=console, judge=judge
            )
        )
    except ModelConfigError as exc:
        _fail(str(exc))
    except UsageProblem as exc:
        _fail(str(exc))
    raise typer.Exit(status)


@eval_app.command("validate")
def validate_command(
    paths: list[Path] = typer.Argument(  # noqa: B008
        None, help="dataset files or folders (default: built-ins and SWITCHBOARD_SKILLS_DIR)"
    ),
) -> None:
    """Check datasets; exit 1 listing every error (file:line field: problem)."""
    from evals.dataset import DatasetError, discover_datasets, load_dataset
    from skills.spec import builtin_dir

    settings = _settings()
    targets = list(paths) if paths else [builtin_dir(), *map(Path, settings.skills_dirs)]
    files = discover_datasets(targets)
    problems = 0
    for path in files:
        try:
            dataset = load_dataset(path)
        except DatasetError as exc:
            for issue in exc.issues:
                typer.echo(str(issue))
            problems += len(exc.issues)
            continue
        typer.echo(f"{path}: {len(dataset.cases)} cases for {dataset.skill}")
    if not files:
        _fail("no *.eval.yaml files found", 1)
    if problems:
        typer.echo(f"{problems} error(s)", err=True)
        raise typer.Exit(1)


# --------------------------------------------------------------------------- feedback


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"--since: expected a date like 2025-05-01, got {value!r}")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@eval_app.command("import-feedback")
def import_feedback_command(
    since: str = typer.Option(..., "--since", help="only feedback from this date (ISO)"),
    skill: list[str] = typer.Option(None, "--skill", help="only these skills"),  # noqa: B008
    out: Path = typer.Option(Path("evals-drafts"), "--out", help="folder for the drafts"),  # noqa: B008
) -> None:
    """Turn 👎 feedback into draft cases (<skill>.feedback.eval.yaml) to complete."""
    from bot.services import open_services
    from evals.feedback import DraftCase, draft_cases, feedback_rows, render_drafts
    from skills.context import ThreadRef

    settings = _settings()
    moment = _since(since)
    assert moment is not None

    async def _main() -> list[DraftCase]:
        async with open_services(settings) as services:
            rows = await feedback_rows(
                services.sessions, since=moment, value="down", skills=skill or ()
            )

            async def history(thread_id: str) -> list[Any]:
                try:
                    return list(await services.runtime.history(ThreadRef.parse(thread_id)))
                except ValueError:
                    return []

            return await draft_cases(rows, history=history)

    drafts = asyncio.run(_main())
    written: list[Path] = []
    for name in sorted({d.skill for d in drafts}):
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.feedback.eval.yaml"
        path.write_text(render_drafts(name, drafts, since=moment), encoding="utf-8")
        written.append(path)
    if not written:
        typer.echo("no 👎 feedback in that period")
        return
    for path in written:
        typer.echo(f"wrote {path}")


@eval_app.command("stats")
def stats_command(
    since: str = typer.Option(None, "--since", help="only feedback from this date (ISO)"),
) -> None:
    """👍/👎 counts and rates per skill and ISO week."""
    from evals.feedback import feedback_rows, weekly_stats
    from storage.sql import create_engine, session_factory, upgrade

    settings = _settings()
    moment = _since(since)

    async def _main() -> list[Any]:
        if settings.uses_embedded_sql:
            await upgrade(settings.database_url)
        engine = create_engine(settings.database_url)
        try:
            return weekly_stats(await feedback_rows(session_factory(engine), since=moment))
        finally:
            await engine.dispose()

    stats = asyncio.run(_main())
    if not stats:
        typer.echo("no feedback recorded yet")
        return
    table = Table(title="Feedback per skill and week")
    for column in ("skill", "week", "👍", "👎", "👍 rate"):
        table.add_column(column, justify="left" if column in ("skill", "week") else "right")
    for row in stats:
        table.add_row(row.skill, row.week, str(row.up), str(row.down), f"{row.up_rate:.0%}")
    Console().print(table)
