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

The composition root mounts these commands with :func:`register`, handing them an
:class:`EvalHost`: how to read the settings, configure logging, load models, build
production's runtime over the evaluation's stores, and open the deployment's feedback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, NoReturn, Protocol, TypeVar

import typer
from langchain_core.messages import BaseMessage
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.core import TyperGroup

from evals.dataset import Dataset, DatasetError, discover_datasets, load_dataset
from evals.feedback import DraftCase, draft_cases, feedback_rows, render_drafts, weekly_stats
from evals.judge import Judge, RubricJudge
from evals.report import summary_table, write_html
from evals.results import BaselineError, EvalRun, compare, load_results
from evals.runner import EvalRunner, RuntimeBuilder, embedded_stores
from skills.context import ThreadRef
from skills.models import ModelConfigError, OfflineChatModel, unmasked
from skills.runtime import ModelFactory, Runtime
from skills.spec import builtin_dir

__all__ = [
    "EvalHost",
    "EvalOptions",
    "EvalSettings",
    "FeedbackSource",
    "eval_app",
    "register",
    "run_evaluation",
]


class EvalSettings(Protocol):
    """What the eval commands read of the deployment's settings."""

    @property
    def model(self) -> str: ...  # SWITCHBOARD_MODEL

    @property
    def skills_dirs(self) -> list[str]: ...  # SWITCHBOARD_SKILLS_DIR

    @property
    def log_level(self) -> str: ...  # SWITCHBOARD_LOG_LEVEL


class FeedbackSource(Protocol):
    """The deployment's stores that ``import-feedback`` reads: feedback rows (SQL) and the
    threads' remembered messages (the runtime's memory)."""

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]: ...

    @property
    def runtime(self) -> Runtime: ...


S = TypeVar("S", bound=EvalSettings)


@dataclass(frozen=True, slots=True)
class EvalHost(Generic[S]):
    """What the composition root hands the eval commands."""

    #: The settings from the environment; exits 2 with one line naming a bad variable.
    settings: Callable[[], S]
    configure_logging: Callable[[str], None]
    #: Chat models by name, as the deployment loads them.
    models: Callable[[S], ModelFactory]
    #: Production's runtime builder, configured from the settings.
    runtimes: Callable[[S], RuntimeBuilder]
    #: The deployment's stores, for ``import-feedback``.
    open_feedback: Callable[[S], AbstractAsyncContextManager[FeedbackSource]]
    #: The deployment's SQL database (migrated if embedded), for ``stats``.
    open_sql: Callable[[S], AbstractAsyncContextManager[async_sessionmaker[AsyncSession]]]


class _DefaultRunGroup(TyperGroup):
    """``switchboard eval refunds`` means ``switchboard eval run refunds``: anything that
    is not a subcommand (or help) goes to ``run``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"switchboard eval: {message}", err=True)
    raise typer.Exit(code)


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
    settings: EvalSettings,
    runtimes: RuntimeBuilder,
    model_factory: ModelFactory,
    console: Console,
    judge: Judge | None = None,
) -> tuple[EvalRun, int]:
    """Run, report and gate; returns the run and the exit status. ``runtimes`` builds
    the runtime (production's builder, over the evaluation's own stores)."""
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
            runtimes=runtimes,
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


def _judge(name: str, factory: Callable[[str], Any]) -> Judge:
    model = factory(name)
    if isinstance(unmasked(model), OfflineChatModel):
        raise UsageProblem("the offline model cannot judge; give --judge-model a real model")
    return RubricJudge(model=model, model_name=name)


def eval_app(host: EvalHost[Any]) -> typer.Typer:
    """The ``eval`` command group, over what ``host`` provides."""
    app = typer.Typer(
        cls=_DefaultRunGroup,
        help="Evaluate skills on their datasets (*.eval.yaml); learn from Slack feedback.",
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    app.command("run")(_run_command(host))
    app.command("validate")(_validate_command(host))
    app.command("import-feedback")(_import_feedback_command(host))
    app.command("stats")(_stats_command(host))
    return app


def register(app: typer.Typer, *, host: EvalHost[Any]) -> None:
    """Add ``eval …`` to the ``switchboard`` command line."""
    app.add_typer(eval_app(host), name="eval")


def _run_command(host: EvalHost[Any]) -> Callable[..., None]:
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
        settings = host.settings()
        host.configure_logging("ERROR" if settings.log_level == "INFO" else settings.log_level)
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
        factory = host.models(settings)
        try:
            factory(model or settings.model)  # configuration errors before the first case
            judge = _judge(judge_model, factory) if judge_model else None
            _, status = asyncio.run(
                run_evaluation(
                    options,
                    settings=settings,
                    runtimes=host.runtimes(settings),
                    model_factory=factory,
                    console=console,
                    judge=judge,
                )
            )
        except ModelConfigError as exc:
            _fail(str(exc))
        except UsageProblem as exc:
            _fail(str(exc))
        raise typer.Exit(status)

    return run_command


def _validate_command(host: EvalHost[Any]) -> Callable[..., None]:
    def validate_command(
        paths: list[Path] = typer.Argument(  # noqa: B008
            None, help="dataset files or folders (default: built-ins and SWITCHBOARD_SKILLS_DIR)"
        ),
    ) -> None:
        """Check datasets; exit 1 listing every error (file:line field: problem)."""
        settings = host.settings()
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

    return validate_command


# --------------------------------------------------------------------------- feedback


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"--since: expected a date like 2025-05-01, got {value!r}")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _import_feedback_command(host: EvalHost[Any]) -> Callable[..., None]:
    def import_feedback_command(
        since: str = typer.Option(..., "--since", help="only feedback from this date (ISO)"),
        skill: list[str] = typer.Option(None, "--skill", help="only these skills"),  # noqa: B008
        out: Path = typer.Option(Path("evals-drafts"), "--out", help="folder for the drafts"),  # noqa: B008
    ) -> None:
        """Turn 👎 feedback into draft cases (<skill>.feedback.eval.yaml) to complete."""
        settings = host.settings()
        moment = _since(since)
        assert moment is not None

        async def _main() -> list[DraftCase]:
            async with host.open_feedback(settings) as source:
                rows = await feedback_rows(
                    source.sessions, since=moment, value="down", skills=skill or ()
                )

                async def history(thread_id: str) -> list[BaseMessage]:
                    try:
                        return list(await source.runtime.history(ThreadRef.parse(thread_id)))
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

    return import_feedback_command


def _stats_command(host: EvalHost[Any]) -> Callable[..., None]:
    def stats_command(
        since: str = typer.Option(None, "--since", help="only feedback from this date (ISO)"),
    ) -> None:
        """👍/👎 counts and rates per skill and ISO week."""
        settings = host.settings()
        moment = _since(since)

        async def _main() -> list[Any]:
            async with host.open_sql(settings) as sessions:
                return weekly_stats(await feedback_rows(sessions, since=moment))

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

    return stats_command
