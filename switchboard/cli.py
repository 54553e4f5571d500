"""The ``switchboard`` command line.

Every command builds :class:`~switchboard.settings.Settings` once; a bad variable prints
one line (``PORT: invalid value …``) and exits with status 2, never a traceback. The
feature packages' commands (``eval``, ``schedules``, ``scheduler``, ``sandbox``) are
mounted here with what they need (:func:`_mount_features`); they never import this package.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import sys
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.slack.client import create_web_client
from evals import cli as eval_cli
from sandbox import cli as sandbox_cli
from scheduler import cli as scheduler_cli
from scheduler.manage import ScheduleManager
from scheduler.service import SchedulerService
from skills.catalog import describe_sources, load_registry, missing_skill
from skills.context import Actor, HttpPolicy
from skills.errors import UnknownSkill
from skills.mcp import probe as mcp_probe
from skills.models import ModelConfigError
from skills.registry import Skill
from skills.sample import StaticSlackReader
from skills.spec import builtin_dir, check_paths, describe_duration
from skills.tracing import setup_langsmith, setup_tracing
from storage.limits import SkillLimitsStore
from storage.sql import create_engine, session_factory, upgrade
from switchboard import operate, skills_cli, usage_cli
from switchboard.audit_cli import audit_commands
from switchboard.console import ConsoleSession, run_console
from switchboard.health import ops_listener, scheduler_ops_app
from switchboard.logs import configure_from
from switchboard.runtime import default_model_factory, eval_runtimes
from switchboard.sandbox import open_sandbox_bot
from switchboard.scheduling import build_scheduler, open_manager
from switchboard.serve import approval_sweep, build_bot, run_http, run_socket, run_worker
from switchboard.services import open_services
from switchboard.settings import DEFAULT_DATABASE_URL, ConfigError, Settings

T = TypeVar("T")

app = typer.Typer(
    name="switchboard",
    help="Switchboard: AI agent skills in Slack.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Switchboard: AI agent skills in Slack. Configuration comes from the environment."""
    setup_tracing(os.environ)  # OTEL_* (off without an OTLP endpoint)
    setup_langsmith(os.environ)  # LANGSMITH_* (off unless LANGSMITH_TRACING=true)


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"switchboard: {message}", err=True)
    raise typer.Exit(code)


def load_settings(*required: str) -> Settings:
    """Settings from the environment, or exit 2 with one line naming the bad variable."""
    try:
        settings = Settings.from_env()
        settings.require(*required)
    except ConfigError as exc:
        fail(str(exc))
    return settings


@contextlib.asynccontextmanager
async def open_sql(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the deployment's SQL database (the embedded one migrates itself)."""
    if settings.uses_embedded_sql:
        await upgrade(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@app.command()
def migrate(
    check: bool = typer.Option(
        False,
        "--check",
        help="only check the schema: at head, or one revision ahead after a rollback (exit 1 "
        "if not)",
    ),
    wait: float = typer.Option(0.0, "--wait", min=0, help="with --check: wait up to SECONDS"),
) -> None:
    """Upgrade the SQL database (DATABASE_URL) to the latest schema, queue tables included."""
    settings = load_settings()
    if check:
        ready, message = asyncio.run(operate.wait_for_schema(settings, wait=wait))
        if not ready:
            fail(message, 1)
        typer.echo(message)
        return
    try:
        revision = asyncio.run(operate.migrate(settings))
    except OSError as exc:
        fail(f"DATABASE_URL: cannot connect ({type(exc).__name__})", 1)
    typer.echo(f"database is at revision {revision}")


@app.command()
def worker(
    concurrency: int = typer.Option(
        None, "--concurrency", min=1, max=1000, help="turns run at once (default 64)"
    ),
) -> None:
    """Run agent turns, approval resumes and scheduled firings from the run queue."""
    settings = load_settings("SLACK_BOT_TOKEN")
    try:
        operate.require_durable_queue(settings, "worker")
    except ConfigError as exc:
        fail(str(exc))
    run_worker(settings, concurrency=concurrency)


runs_app = typer.Typer(help="Inspect and steer queued runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


def _operate(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except ConfigError as exc:
        fail(str(exc))
    except operate.OperateError as exc:
        fail(str(exc), exc.code)


@runs_app.command("list")
def runs_list(
    status: str = typer.Option(None, "--status", help="todo, doing, succeeded, failed…"),
    limit: int = typer.Option(50, "--limit", min=1),
) -> None:
    """The latest runs, newest first."""
    for line in _operate(operate.runs_list(load_settings(), status=status, limit=limit)):
        typer.echo(line)


@runs_app.command("show")
def runs_show(run_id: int) -> None:
    """One run: its job and the messages it answers."""
    for line in _operate(operate.runs_show(load_settings(), run_id)):
        typer.echo(line)


@runs_app.command("cancel")
def runs_cancel(run_id: int) -> None:
    """Cancel a waiting run, or stop a running one."""
    typer.echo(_operate(operate.runs_cancel(load_settings(), run_id)))


@runs_app.command("retry")
def runs_retry(run_id: int) -> None:
    """Queue a failed run again."""
    typer.echo(_operate(operate.runs_retry(load_settings(), run_id)))


skills_app = typer.Typer(
    help="Create, list, show, validate, disable and enable skills.", no_args_is_help=True
)
app.add_typer(skills_app, name="skills")


def eval_host() -> eval_cli.EvalHost[Settings]:
    """What ``switchboard eval`` gets from the root: settings, logging, models, production's
    runtime builder, and the deployment's stores for the feedback commands."""
    return eval_cli.EvalHost(
        settings=load_settings,
        configure_logging=_configure_logging,
        models=lambda settings: default_model_factory(settings, os.environ),
        runtimes=eval_runtimes,
        open_feedback=open_services,
        open_sql=open_sql,
        http_models=lambda settings, client: default_model_factory(
            settings, os.environ, http_client=client
        ),
        database_configured=lambda settings: settings.database_url != DEFAULT_DATABASE_URL,
    )


def schedule_manager() -> contextlib.AbstractAsyncContextManager[ScheduleManager]:
    """``switchboard schedules …``: a manager over the deployment's SQL and Redis."""
    return open_manager(load_settings())


@contextlib.asynccontextmanager
async def _open_scheduler() -> AsyncIterator[SchedulerService]:
    """``switchboard scheduler``: this process's scheduler over the deployment's services,
    with ``/healthz``, ``/readyz`` (stores, schema, leader state) and ``/metrics`` on PORT
    (``/metrics`` on METRICS_PORT when set) for the kubelet and Prometheus. Its leader
    also runs the approval expiry sweep, with the bot's approval cards built here (no
    listeners: nothing reaches this process from Slack)."""
    settings = load_settings("SLACK_BOT_TOKEN")
    configure_from(settings)
    token = settings.slack_bot_token
    async with open_services(settings) as services:
        client = create_web_client(
            token=token.get_secret_value() if token else "", base_url=settings.slack_api_url
        )
        bot = build_bot(services, client=client, signing_secret=None)
        # On a shared (PostgreSQL) queue the leader only enqueues; workers post.
        service = build_scheduler(
            services,
            client=client,
            queued=services.queue.durable,
            maintenance=[approval_sweep(bot, settings)],
        )
        app = scheduler_ops_app(services, service, serve_metrics=settings.metrics_port is None)
        try:
            async with ops_listener(
                app,
                services.metrics,
                host=settings.host,
                port=settings.port,
                metrics_port=settings.metrics_port,
                name="scheduler-http",
            ):
                yield service
        finally:
            await bot.worker.drain()


def _configure_logging(level: str) -> None:
    """Logging at ``level`` in the format the settings ask for (JSON in the image)."""
    configure_from(load_settings(), level)


def _mount_features() -> None:
    """The feature packages' commands, with what they need from the root."""
    app.add_typer(audit_commands(load_settings), name="audit")
    usage_cli.register(app, open_sql=lambda: open_sql(load_settings()))
    eval_cli.register(app, host=eval_host())
    scheduler_cli.register(app, open_manager=schedule_manager, open_scheduler=_open_scheduler)
    sandbox_cli.register(app, bots=open_sandbox_bot, configure_logging=_configure_logging)
    skills_cli.register(skills_app, load_settings=load_settings)


_mount_features()


@skills_app.command("list")
def skills_list() -> None:
    """List the skills this deployment offers."""
    settings = load_settings()
    loaded = load_registry(settings.skills_dirs, env=os.environ)
    health = mcp_probe(loaded.registry, policy=HttpPolicy(tuple(settings.http_allowed_hosts)))
    typer.echo(describe_sources(loaded)[0])
    builtin = builtin_dir().resolve()
    for skill in loaded.registry:
        access = "everyone" if skill.access.is_open else "restricted"
        state = health[skill.name].summary() if skill.name in health else ""
        versions = loaded.registry.versions(skill.name)
        version = " / ".join(
            f"v{v.version}" + (f" ({v.canary:g}%)" if v is not versions[0] else "")
            for v in versions
            if v.version
        )
        source = skill.source
        where = (
            "built-in"
            if skill.spec is None or Path(source).resolve().is_relative_to(builtin)
            else source
        )
        typer.echo(
            f"{skill.name:<14} {access:<10} {skill.description}"
            + (f"  [{version}]" if version else "")
            + f"  ({where})"
            + (state and f"  [degraded: {state}]")
        )
    for issue in [*loaded.issues, *(i for h in health.values() for i in h.issues)]:
        typer.echo(f"error: {issue}", err=True)


@skills_app.command("show")
def skills_show(name: str) -> None:
    """Show one skill: description, model, access, tools and approval policies."""
    settings = load_settings()
    loaded = load_registry(settings.skills_dirs, env=os.environ)
    try:
        skill = loaded.registry.get(name)
    except UnknownSkill:
        fail(missing_skill(name, loaded), 1)
    typer.echo(describe_skill(skill, default_model=settings.model))
    canary = loaded.registry.canary(name)
    if canary is not None:
        typer.echo(
            f"\ncanary:      v{canary.version} gets {canary.canary or 0:g}% of new conversations"
            f" (a conversation keeps its version); from {canary.source}"
        )
        typer.echo(describe_skill(canary, default_model=settings.model))


def describe_skill(skill: Skill, *, default_model: str) -> str:
    """A readable description of ``skill`` with secrets redacted: every value expanded
    from ``${ENV}`` shows as its ``${VAR}`` text (see ``SkillSpec.shown``)."""
    spec = skill.spec

    def shown(loc: tuple[str | int, ...], value: str) -> str:
        return spec.shown(loc, value) if spec is not None else value

    model = shown(("model",), skill.model) if skill.model else f"{default_model} (default)"
    lines = [
        f"name:        {skill.name}",
        *([f"version:     {skill.version}"] if skill.version else []),
        f"description: {skill.description}",
        f"model:       {model}",
        f"source:      {skill.source}",
        f"memory:      {describe_duration(skill.memory_ttl)}",
    ]
    access = skill.access
    if access.is_open:
        lines.append("access:      everyone")
    else:
        for label, values in (
            ("channels", access.channels),
            ("users", access.users),
            ("usergroups", access.usergroups),
        ):
            listed = list(getattr(spec.access, label)) if spec is not None else sorted(values)
            if listed:
                texts = sorted(shown(("access", label, i), v) for i, v in enumerate(listed))
                lines.append(f"access.{label}: {', '.join(texts)}")
    if skill.spec is not None:
        lines.append("tools:")
        lines.extend(f"  {line}" for line in skill.spec.describe_tools())
    else:
        lines.append("kind:        Python graph")
    return "\n".join(lines)


def _set_skill_enabled(name: str, enabled: bool, reason: str | None) -> None:
    settings = load_settings()
    registry = load_registry(settings.skills_dirs, env=os.environ).registry
    if name not in registry:
        fail(f"there is no skill named {name!r}; try `switchboard skills list`", 1)

    async def _flip() -> None:
        async with open_sql(settings) as sessions:
            store = SkillLimitsStore(sessions=sessions)
            await store.set_enabled(name, enabled, by=f"cli:{getpass.getuser()}", reason=reason)

    try:
        asyncio.run(_flip())
    except OSError as exc:
        fail(f"DATABASE_URL: cannot connect ({type(exc).__name__})", 1)
    state = "enabled" if enabled else "disabled (every replica refuses it within seconds)"
    typer.echo(f"{name} {state}")


@skills_app.command("disable")
def skills_disable(
    name: str,
    reason: str = typer.Option(None, "--reason", help="shown to people who try to use it"),
) -> None:
    """Switch a skill off for everyone (the kill switch), until `skills enable`."""
    _set_skill_enabled(name, False, reason)


@skills_app.command("enable")
def skills_enable(name: str) -> None:
    """Switch a skill back on after `skills disable`."""
    _set_skill_enabled(name, True, None)


@skills_app.command("validate")
def skills_validate(
    paths: list[Path] = typer.Argument(  # noqa: B008 - typer's declaration style
        None, help="spec files or folders (default: built-ins and SWITCHBOARD_SKILLS_DIR)"
    ),
) -> None:
    """Validate skill specs; exit 1 listing every error (file:line field: problem)."""
    settings = load_settings()
    targets = list(paths) if paths else [builtin_dir(), *map(Path, settings.skills_dirs)]
    result = check_paths(targets, env=os.environ)
    checked = len(result.files)
    where = ", ".join(str(t) for t in targets)
    for issue in result.issues:
        typer.echo(str(issue))
    if result.issues:
        typer.echo(f"{len(result.issues)} error(s) in {checked} spec file(s)", err=True)
        raise typer.Exit(1)
    if checked == 0:
        fail(
            f"no skill spec found in {where} (looked for *.yaml and *.yml, "
            "not *.eval.yaml); nothing was checked"
        )
    skills = len(result.specs) + len(result.canaries)
    typer.echo(f"checked {checked} spec file(s) in {where}: {skills} skill(s), all valid")


@app.command()
def console(
    skill: str = typer.Option(None, "--skill", help="send every message to this skill"),
    as_user: str = typer.Option(
        "U0SAM", "--as", help="who you are in the sample workspace (e.g. U0CAROL)"
    ),
) -> None:
    """Chat with the runtime in the terminal (embedded defaults, sample Slack data)."""
    settings = load_settings()
    configure_from(settings, "WARNING" if settings.log_level == "INFO" else settings.log_level)

    async def _read(prompt: str) -> str | None:
        try:
            return await asyncio.to_thread(input, prompt)
        except EOFError:
            return None

    async def _main() -> None:
        async with open_services(settings) as services:
            reader = StaticSlackReader.sample(datetime.now(UTC))
            user = await reader.user_info(as_user)
            actor = Actor(
                user_id=as_user,
                name=user.name if user else as_user,
                tz=(user.tz if user and user.tz else "UTC"),
            )
            if skill is not None and skill not in services.registry:
                loaded = load_registry(settings.skills_dirs, env=os.environ)
                fail(missing_skill(skill, loaded), 1)
            for line in services.skill_sources:
                typer.echo(line)
            session = ConsoleSession(
                runtime=services.runtime, actor=actor, slack=reader, skill=skill
            )
            await run_console(session, read=_read, write=typer.echo)

    try:
        asyncio.run(_main())
    except ModelConfigError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        typer.echo("bye")


@app.command()
def serve() -> None:
    """Run the bot in HTTP mode: POST /slack/events, /healthz, /readyz, /metrics."""
    settings = load_settings("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")
    _check_receive_only(settings)
    run_http(settings)


@app.command()
def socket() -> None:
    """Run the bot over Socket Mode (SLACK_APP_TOKEN); no public URL needed."""
    settings = load_settings("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN")
    _check_receive_only(settings)
    run_socket(settings)


def _check_receive_only(settings: Settings) -> None:
    try:
        settings.check_receive_only()
    except ConfigError as exc:
        fail(str(exc))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except ConfigError as exc:  # raised outside load_settings, e.g. by a factory
        typer.echo(f"switchboard: {exc}", err=True)
        sys.exit(2)
