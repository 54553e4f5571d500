"""``switchboard eval``: run datasets, gate on a baseline, and learn from Slack feedback.

    switchboard eval [SKILL…] [--mode quality|wiring] [--model M] [--judge-model M]
                     [--simulator-model M] [--record | --replay] [--cassettes DIR]
                     [--repeat N] [--concurrency K] [--out DIR] [--baseline FILE]
                     [--save-baseline FILE] [--threshold 0.05] [--dataset FILE…]
    switchboard eval validate [PATH…]
    switchboard eval import-feedback --since 2025-05-01 [--skill S] [--out DIR] [--sandbox]
    switchboard eval stats [--since DATE] [--by day|week] [--sandbox | --database URL]

Two modes run the same cases. *quality*: the skills' real models (and the judge), the
score that matters. *wiring*: deterministic and offline, for CI — each case's
``script:`` plays the models (or ``--replay`` serves a cassette ``--record`` wrote from
a real provider), through the same runtime. The report names the mode of every number.

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
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Literal, NoReturn, Protocol, TypeVar

import httpx
import typer
from langchain_core.messages import BaseMessage
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.core import TyperGroup

from evals.cassette import CassetteError
from evals.dataset import Dataset, DatasetError, discover_datasets, load_dataset
from evals.feedback import DraftCase, draft_cases, render_drafts, weekly_stats
from evals.judge import Judge, RubricJudge
from evals.pairwise import (
    Comparison,
    ModelPairwiseJudge,
    PairwiseJudge,
    compare_runs,
    comparison_table,
)
from evals.report import summary_table, write_html
from evals.results import BaselineError, CaseResult, EvalRun, compare, load_results
from evals.runner import (
    CassetteOptions,
    EvalRunner,
    Mode,
    RuntimeBuilder,
    embedded_stores,
    fixture_url,
)
from evals.simulator import ModelSimulator, Simulator
from skills.catalog import load_registry
from skills.context import ThreadRef
from skills.models import OFFLINE, ModelConfigError, OfflineChatModel, unmasked
from skills.runtime import ModelFactory, Runtime
from skills.spec import SkillSpec, SpecValidationError, builtin_dir, load_spec_file
from storage.feedback import FeedbackStore
from storage.scores import QualityRow, ScoreStore
from storage.sql import create_engine, session_factory, upgrade

__all__ = [
    "SANDBOX_DATABASE",
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

SANDBOX_DATABASE = Path(".switchboard-sandbox") / "sandbox.db"
"""Where ``switchboard sandbox`` keeps its SQL state (its default ``--state-dir``)."""


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
    #: Chat models whose provider HTTP goes through the given client (``--record``).
    http_models: Callable[[S, httpx.AsyncClient], ModelFactory] | None = None
    #: Whether ``DATABASE_URL`` is set (else ``stats`` may point at the sandbox's database).
    database_configured: Callable[[S], bool] = lambda _settings: True


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
    simulator_model: str | None = None
    mode: Mode | None = None  # None: wiring on the offline model, quality otherwise
    cassette: Literal["record", "replay"] | None = None
    cassettes: Path | None = None
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


def resolve_mode(options: EvalOptions, model: str) -> Mode:
    """The mode a run is in: ``--record`` is quality, ``--replay`` is wiring; otherwise
    ``--mode``, defaulting to wiring when the model is ``offline`` (no provider)."""
    if options.cassette == "record":
        if options.mode == "wiring":
            raise UsageProblem("--record runs in quality mode (a real model); drop --mode wiring")
        return "quality"
    if options.cassette == "replay":
        if options.mode == "quality":
            raise UsageProblem("--replay runs in wiring mode; drop --mode quality")
        return "wiring"
    if options.mode is not None:
        return options.mode
    return "wiring" if model.strip().lower() == OFFLINE else "quality"


def check_skills(
    datasets: Sequence[Dataset],
    skills_dirs: Sequence[str],
    *,
    where: str,
    extra: Sequence[str] = (),
) -> None:
    """Every dataset's skill (and every skill a case forces) must be loaded (or be one of
    ``extra``, skills a spec variant brings): a dataset run against a missing skill would
    only measure the fallback."""
    problems: list[str] = []
    for dataset in datasets:
        env = {**dataset.env, **{name: fixture_url(name) for name in dataset.http}}
        names = set(load_registry(skills_dirs, env=env).registry.names()) | set(extra)
        wanted = [dataset.skill, *(c.skill for c in dataset.cases if c.skill)]
        for skill in dict.fromkeys(wanted):
            if skill not in names:
                problems.append(
                    f"{dataset.path or dataset.name}: the skill {skill!r} is not loaded "
                    f"(skills loaded: {', '.join(sorted(names))}; looked in {where})"
                )
    if problems:
        raise UsageProblem("\n".join(problems))


async def run_evaluation(
    options: EvalOptions,
    *,
    settings: EvalSettings,
    runtimes: RuntimeBuilder,
    model_factory: ModelFactory,
    console: Console,
    judge: Judge | None = None,
    simulator: Simulator | None = None,
    http_models: Callable[[httpx.AsyncClient], ModelFactory] | None = None,
    upstream: httpx.AsyncBaseTransport | None = None,
) -> tuple[EvalRun, int]:
    """Run, report and gate; returns the run and the exit status. ``runtimes`` builds
    the runtime (production's builder, over the evaluation's own stores)."""
    folders = [builtin_dir(), *map(Path, settings.skills_dirs)]
    datasets = load_datasets(options.datasets, folders, options.skills)
    where = "the built-in skills" + (
        f" and SWITCHBOARD_SKILLS_DIR={':'.join(settings.skills_dirs)}"
        if settings.skills_dirs
        else "; SWITCHBOARD_SKILLS_DIR is not set"
    )
    check_skills(datasets, settings.skills_dirs, where=where)
    baseline = None
    if options.baseline is not None:
        try:
            baseline = load_results(options.baseline)
        except BaselineError as exc:
            raise UsageProblem(str(exc)) from None
    model = options.model or settings.model
    mode = resolve_mode(options, model)
    cassettes = None
    if options.cassette is not None:
        if options.cassette == "record":
            if not model.startswith("openai:"):
                raise UsageProblem(
                    f"--record records OpenAI-compatible providers (openai:…); the model is {model}"
                )
            if options.repeat != 1:
                raise UsageProblem("--record records one attempt per case; drop --repeat")
            if http_models is None:
                raise UsageProblem("this deployment cannot record model HTTP")
        cassettes = CassetteOptions(
            action=options.cassette,
            folder=options.cassettes,
            http_models=http_models,
            upstream=upstream,
        )
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
        try:
            runner = EvalRunner(
                stores=stores,
                runtimes=runtimes,
                model_factory=model_factory,
                model=model,
                force_model=options.model is not None,
                judge=judge,
                simulator=simulator,
                mode=mode,
                cassettes=cassettes,
                repeat=options.repeat,
                concurrency=options.concurrency,
                skills_dirs=settings.skills_dirs,
                on_attempt=advance,
            )
            with progress:
                run = await runner.run(datasets)
        except CassetteError as exc:
            raise UsageProblem(str(exc)) from None

    console.print(summary_table(run))
    out = options.out or Path("eval-results") / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run.write(out / "results.json")
    write_html(run, out / "report.html")
    console.print(f"results: {out / 'results.json'}  report: {out / 'report.html'}")
    if options.cassette == "record":
        for path in run.cassettes:
            console.print(f"cassette written: {path}", highlight=False)
    for case in run.cases:
        if not case.passed:
            console.print(_failure_line(case), highlight=False)
    if options.save_baseline is not None:
        run.write(options.save_baseline)
        console.print(f"baseline saved to {options.save_baseline}")
    if baseline is not None:
        verdict = compare(baseline, run, threshold=options.threshold)
        console.print(verdict.describe(), highlight=False)
        return run, 1 if verdict.failed else 0
    return run, 1 if run.failures else 0


_FIRST = ("cassette", "script", "error", "route")  # causes before their consequences


def _failure_line(case: CaseResult) -> str:
    """``FAILED: refunds/x — route refunds — answered by ask; …``: each failed check with
    what actually happened, the checks that explain the others first."""
    checks = [c for a in case.attempts for c in a.failed_checks]
    checks.sort(key=lambda c: (_FIRST.index(c.kind) if c.kind in _FIRST else len(_FIRST), c.name))
    parts = dict.fromkeys(f"{c.name} — {c.detail}" if c.detail else c.name for c in checks)
    tag = "known issue" if case.known_issue else "FAILED"
    return f"{tag}: {case.key} — {'; '.join(parts)}"


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
    app.command("compare")(_compare_command(host))
    return app


def register(app: typer.Typer, *, host: EvalHost[Any]) -> None:
    """Add ``eval …`` to the ``switchboard`` command line."""
    app.add_typer(eval_app(host), name="eval")


def _run_command(host: EvalHost[Any]) -> Callable[..., None]:
    def run_command(
        skills: list[str] = typer.Argument(  # noqa: B008 - typer's declaration style
            None, metavar="[SKILL]...", help="skills to evaluate (default: every dataset)"
        ),
        mode: str = typer.Option(
            None,
            "--mode",
            help="quality (real models, judge) or wiring (scripted, no provider); "
            "default: wiring on the offline model, quality otherwise",
        ),
        model: str = typer.Option(None, "--model", help="run every skill on this model"),
        judge_model: str = typer.Option(None, "--judge-model", help="LLM judge for rubrics"),
        simulator_model: str = typer.Option(
            None, "--simulator-model", help="model playing simulated users (default: --model)"
        ),
        record: bool = typer.Option(
            False, "--record", help="quality mode, and write each dataset's cassette"
        ),
        replay: bool = typer.Option(
            False, "--replay", help="wiring mode, the models played from the cassettes"
        ),
        cassettes: Path = typer.Option(  # noqa: B008
            None, "--cassettes", help="cassette folder (default: cassettes/ beside each dataset)"
        ),
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
        if mode not in (None, "quality", "wiring"):
            _fail(f"--mode: expected quality or wiring, got {mode!r}")
        if record and replay:
            _fail("--record and --replay exclude each other")
        options = EvalOptions(
            skills=list(skills or []),
            datasets=list(dataset or []),
            model=model,
            judge_model=judge_model,
            simulator_model=simulator_model,
            mode=mode,  # type: ignore[arg-type]  # checked above
            cassette="record" if record else "replay" if replay else None,
            cassettes=cassettes,
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
        http_models = host.http_models
        try:
            chosen = model or settings.model
            quality = resolve_mode(options, chosen) == "quality"
            judge = simulator = None
            if quality:
                factory(chosen)  # configuration errors before the first case
                judge = _judge(judge_model, factory) if judge_model else None
                simulator = _simulator(simulator_model or chosen, factory)
            _, status = asyncio.run(
                run_evaluation(
                    options,
                    settings=settings,
                    runtimes=host.runtimes(settings),
                    model_factory=factory,
                    console=console,
                    judge=judge,
                    simulator=simulator,
                    http_models=(
                        (lambda client: http_models(settings, client))
                        if http_models is not None
                        else None
                    ),
                )
            )
        except ModelConfigError as exc:
            _fail(str(exc))
        except UsageProblem as exc:
            _fail(str(exc))
        raise typer.Exit(status)

    return run_command


async def run_comparison(
    *,
    a: str,
    b: str,
    skills: Sequence[str],
    datasets: Sequence[Path],
    settings: EvalSettings,
    runtimes: RuntimeBuilder,
    model_factory: ModelFactory,
    judge: PairwiseJudge,
    console: Console,
    out: Path,
    concurrency: int = 4,
) -> Comparison:
    """The same cases on variant ``a`` and ``b``, then the pairwise judge; writes
    ``compare.json`` and ``compare.html``.

    A variant is a model string (forced on every skill), or the path of a skill spec file
    (``*.yaml``): that spec replaces the served skill of its name, each skill on its own
    model (``SWITCHBOARD_MODEL`` by default) - a new version against the one served, the
    gate before raising a canary's share. Both run in quality mode."""
    folders = [builtin_dir(), *map(Path, settings.skills_dirs)]
    loaded = load_datasets(datasets, folders, skills)
    specs = {variant: _spec_variant(variant) for variant in (a, b)}
    check_skills(
        loaded,
        settings.skills_dirs,
        where="the built-in skills and SWITCHBOARD_SKILLS_DIR",
        extra=[spec.name for spec in specs.values() if spec is not None],
    )
    runs: list[EvalRun] = []
    for variant in (a, b):
        spec = specs[variant]
        model = settings.model if spec is not None else variant
        model_factory(model)  # configuration errors before the first case
        async with embedded_stores() as stores:
            runner = EvalRunner(
                stores=stores,
                runtimes=runtimes,
                model_factory=model_factory,
                model=model,
                force_model=spec is None,
                simulator=_simulator(model, model_factory),
                mode="quality",
                concurrency=concurrency,
                skills_dirs=settings.skills_dirs,
                specs=[Path(variant)] if spec is not None else [],
            )
            runs.append(await runner.run(loaded))
    rubrics = {f"{d.skill}/{c.id}": c.expect.rubric for d in loaded for c in d.cases}
    comparison = await compare_runs(runs[0], runs[1], judge=judge, rubrics=rubrics)
    console.print(comparison_table(comparison))
    comparison.write(out)
    console.print(f"comparison: {out / 'compare.json'}  report: {out / 'compare.html'}")
    return comparison


def _spec_variant(variant: str) -> SkillSpec | None:
    """The spec a ``--a``/``--b`` names when it is a ``.yaml`` path (checked now, so a bad
    one stops the comparison with its file:line before any case runs); None for a model."""
    path = Path(variant)
    if path.suffix not in {".yaml", ".yml"}:
        return None
    if not path.is_file():
        raise UsageProblem(f"{variant}: no such skill spec file")
    try:
        return load_spec_file(path, env=dict(os.environ))
    except SpecValidationError as exc:
        raise UsageProblem("\n".join(str(issue) for issue in exc.issues)) from exc


def _compare_command(host: EvalHost[Any]) -> Callable[..., None]:
    def compare_command(
        skills: list[str] = typer.Argument(  # noqa: B008
            None, metavar="[SKILL]...", help="skills to compare on (default: every dataset)"
        ),
        a: str = typer.Option(..., "--a", help="variant A: a model string or a spec file"),
        b: str = typer.Option(..., "--b", help="variant B: a model string or a spec file"),
        judge_model: str = typer.Option(..., "--judge-model", help="the pairwise judge"),
        concurrency: int = typer.Option(4, "--concurrency", min=1, help="cases run at once"),
        out: Path = typer.Option(None, "--out", help="folder for compare.json and .html"),  # noqa: B008
        dataset: list[Path] = typer.Option(  # noqa: B008
            None, "--dataset", help="dataset file(s) to run instead of discovering them"
        ),
    ) -> None:
        """Run the same cases on A and B; a pairwise judge gives A's win/tie/loss."""
        settings = host.settings()
        host.configure_logging("ERROR" if settings.log_level == "INFO" else settings.log_level)
        factory = host.models(settings)
        folder = out or Path("eval-results") / datetime.now(UTC).strftime("compare-%Y%m%d-%H%M%S")
        try:
            model = factory(judge_model)
            if isinstance(unmasked(model), OfflineChatModel):
                raise UsageProblem(
                    "the offline model cannot judge; give --judge-model a real model"
                )
            asyncio.run(
                run_comparison(
                    a=a,
                    b=b,
                    skills=list(skills or []),
                    datasets=list(dataset or []),
                    settings=settings,
                    runtimes=host.runtimes(settings),
                    model_factory=factory,
                    judge=ModelPairwiseJudge(model=model, model_name=judge_model),
                    console=Console(width=140),
                    out=folder,
                    concurrency=concurrency,
                )
            )
        except ModelConfigError as exc:
            _fail(str(exc))
        except UsageProblem as exc:
            _fail(str(exc))

    return compare_command


def _simulator(name: str, factory: Callable[[str], Any]) -> Simulator | None:
    """A model that plays simulated users; none on the offline model (it cannot)."""
    model = factory(name)
    if isinstance(unmasked(model), OfflineChatModel):
        return None
    return ModelSimulator(model=model, model_name=name)


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


@contextlib.asynccontextmanager
async def _open_database(url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A SQL database named on the command line (``--database``, ``--sandbox``), migrated
    like the embedded default is."""
    if url.startswith("sqlite"):
        await upgrade(url)
    engine = create_engine(url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


def _database_option(sandbox: bool, database: str | None) -> str | None:
    if sandbox and database:
        _fail("--sandbox and --database exclude each other")
    if sandbox:
        if not SANDBOX_DATABASE.is_file():
            _fail(f"no sandbox database at {SANDBOX_DATABASE} (run `switchboard sandbox` first)")
        return f"sqlite+aiosqlite:///{SANDBOX_DATABASE}"
    return database


def _sandbox_hint(host: EvalHost[Any], settings: Any, url: str | None) -> str:
    """When the deployment's database is the embedded default and the sandbox has one,
    say where the sandbox's feedback is (it keeps its own database)."""
    if url is None and not host.database_configured(settings) and SANDBOX_DATABASE.is_file():
        return f"; the sandbox keeps its feedback in {SANDBOX_DATABASE}: add --sandbox to read it"
    return ""


def _import_feedback_command(host: EvalHost[Any]) -> Callable[..., None]:
    def import_feedback_command(
        since: str = typer.Option(..., "--since", help="only feedback from this date (ISO)"),
        skill: list[str] = typer.Option(None, "--skill", help="only these skills"),  # noqa: B008
        out: Path = typer.Option(Path("evals-drafts"), "--out", help="folder for the drafts"),  # noqa: B008
        sandbox: bool = typer.Option(
            False, "--sandbox", help=f"read the sandbox's feedback ({SANDBOX_DATABASE})"
        ),
        database: str = typer.Option(None, "--database", help="read this SQL database (URL)"),
    ) -> None:
        """Turn 👎 feedback into draft cases (<skill>.feedback.eval.yaml) to complete."""
        settings = host.settings()
        moment = _since(since)
        assert moment is not None
        url = _database_option(sandbox, database)

        async def _from(
            sessions: async_sessionmaker[AsyncSession], runtime: Runtime | None
        ) -> list[DraftCase]:
            rows = await FeedbackStore(sessions=sessions).rows(
                since=moment, value="down", skills=skill or ()
            )

            async def history(thread_id: str) -> list[BaseMessage]:
                if runtime is None:
                    return []  # another database's threads: only the stored request is left
                try:
                    return list(await runtime.history(ThreadRef.parse(thread_id)))
                except ValueError:
                    return []

            return await draft_cases(rows, history=history)

        async def _main() -> list[DraftCase]:
            if url is not None:
                async with _open_database(url) as sessions:
                    return await _from(sessions, None)
            async with host.open_feedback(settings) as source:
                return await _from(source.sessions, source.runtime)

        drafts = asyncio.run(_main())
        written: list[Path] = []
        for name in sorted({d.skill for d in drafts}):
            out.mkdir(parents=True, exist_ok=True)
            path = out / f"{name}.feedback.eval.yaml"
            path.write_text(render_drafts(name, drafts, since=moment), encoding="utf-8")
            written.append(path)
        if not written:
            typer.echo("no 👎 feedback in that period" + _sandbox_hint(host, settings, url))
            return
        for path in written:
            typer.echo(f"wrote {path}")

    return import_feedback_command


def quality_table(rows: Sequence[QualityRow], *, period: str) -> Table:
    """Online quality per skill and period (``switchboard eval stats``)."""
    table = Table(title=f"Online quality per skill and {period} (sampled production turns)")
    columns = ("skill", period, "sampled", "scored", "pass rate", "mean score", "👎")
    for column in columns:
        table.add_column(column, justify="left" if column in ("skill", period) else "right")
    for row in rows:
        table.add_row(
            row.skill,
            row.period,
            str(row.sampled),
            str(row.scored),
            "-" if row.pass_rate is None else f"{row.pass_rate:.0%}",
            "-" if row.mean_score is None else f"{row.mean_score:.2f}",
            str(row.thumbs_down),
        )
    return table


def _stats_command(host: EvalHost[Any]) -> Callable[..., None]:
    def stats_command(
        since: str = typer.Option(None, "--since", help="only feedback from this date (ISO)"),
        by: str = typer.Option(
            "week", "--by", help="online quality per day or per ISO week (day|week)"
        ),
        sandbox: bool = typer.Option(
            False, "--sandbox", help=f"read the sandbox's feedback ({SANDBOX_DATABASE})"
        ),
        database: str = typer.Option(None, "--database", help="read this SQL database (URL)"),
    ) -> None:
        """👍/👎 per skill and ISO week, and online quality (sampled turns the judge
        scored: pass rate, mean score, 👎) per skill and day or week."""
        settings = host.settings()
        moment = _since(since)
        if by not in ("day", "week"):
            _fail(f"--by: expected day or week, got {by!r}")
        url = _database_option(sandbox, database)

        async def _main() -> tuple[list[Any], list[QualityRow]]:
            opened = _open_database(url) if url is not None else host.open_sql(settings)
            async with opened as sessions:
                feedback = weekly_stats(await FeedbackStore(sessions=sessions).rows(since=moment))
                quality = await ScoreStore(sessions=sessions).quality(
                    since=moment,
                    period=by,  # type: ignore[arg-type]  # checked above
                )
                return feedback, [row for row in quality if row.sampled or row.thumbs_down]

        stats, quality = asyncio.run(_main())
        if not stats and not quality:
            typer.echo("no feedback recorded yet" + _sandbox_hint(host, settings, url))
            return
        console = Console(width=120)
        if stats:
            table = Table(title="Feedback per skill and week")
            for column in ("skill", "week", "👍", "👎", "👍 rate"):
                table.add_column(column, justify="left" if column in ("skill", "week") else "right")
            for row in stats:
                table.add_row(row.skill, row.week, str(row.up), str(row.down), f"{row.up_rate:.0%}")
            console.print(table)
        if any(row.sampled for row in quality):
            console.print(quality_table(quality, period=by))
        else:
            console.print(
                "no sampled turns yet: set SWITCHBOARD_EVAL_SAMPLE (a 👎 is always sampled)"
            )

    return stats_command
