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
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.slack.client import create_web_client
from evals import cli as eval_cli
from sandbox import cli as sandbox_cli
from scheduler import cli as scheduler_cli
from scheduler.manage import ScheduleManager
from scheduler.service import SchedulerService
from skills.catalog import load_registry
from skills.context import Actor, HttpPolicy
from skills.errors import UnknownSkill
from skills.mcp import probe as mcp_probe
from skills.models import ModelConfigError
from skills.registry import Skill
from skills.sample import StaticSlackReader
from skills.spec import builtin_dir, describe_duration, validate_paths
from skills.tracing import setup_langsmith, setup_tracing
from storage.limits import SkillLimitsStore
from storage.sql import create_engine, current_revision, session_factory, upgrade
from switchboard.audit_cli import audit_commands
from switchboard.console import ConsoleSession, run_console
from switchboard.logs import configure_logging
from switchboard.runtime import default_model_factory, eval_runtimes
from switchboard.sandbox import open_sandbox_bot
from switchboard.scheduling import build_scheduler, open_manager
from switchboard.serve import run_http, run_socket
from switchboard.services import open_services
from switchboard.settings import ConfigError, Settings

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
def migrate() -> None:
    """Upgrade the SQL database (DATABASE_URL) to the latest schema."""
    settings = load_settings()

    async def _migrate() -> str | None:
        await upgrade(settings.database_url)
        engine = create_engine(settings.database_url)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    try:
        revision = asyncio.run(_migrate())
    except OSError as exc:
        fail(f"DATABASE_URL: cannot connect ({type(exc).__name__})", 1)
    typer.echo(f"database is at revision {revision}")


skills_app = typer.Typer(
    help="List, show, validate, disable and enable skills.", no_args_is_help=True
)
app.add_typer(skills_app, name="skills")


def eval_host() -> eval_cli.EvalHost[Settings]:
    """What ``switchboard eval`` gets from the root: settings, logging, models, production's
    runtime builder, and the deployment's stores for the feedback commands."""
    return eval_cli.EvalHost(
        settings=load_settings,
        configure_logging=configure_logging,
        models=lambda settings: default_model_factory(settings, os.environ),
        runtimes=eval_runtimes,
        open_feedback=open_services,
        open_sql=open_sql,
    )


def schedule_manager() -> contextlib.AbstractAsyncContextManager[ScheduleManager]:
    """``switchboard schedules …``: a manager over the deployment's SQL and Redis."""
    return open_manager(load_settings())


@contextlib.asynccontextmanager
async def _open_scheduler() -> AsyncIterator[SchedulerService]:
    """``switchboard scheduler``: this process's scheduler over the deployment's services."""
    settings = load_settings("SLACK_BOT_TOKEN")
    configure_logging(settings.log_level)
    token = settings.slack_bot_token
    async with open_services(settings) as services:
        client = create_web_client(
            token=token.get_secret_value() if token else "", base_url=settings.slack_api_url
        )
        yield build_scheduler(services, client=client)


def _mount_features() -> None:
    """The feature packages' commands, with what they need from the root."""
    app.add_typer(audit_commands(load_settings), name="audit")
    eval_cli.register(app, host=eval_host())
    scheduler_cli.register(app, open_manager=schedule_manager, open_scheduler=_open_scheduler)
    sandbox_cli.register(app, bots=open_sandbox_bot, configure_logging=configure_logging)


_mount_features()


@skills_app.command("list")
def skills_list() -> None:
    """List the skills this deployment offers."""
    settings = load_settings()
    loaded = load_registry(settings.skills_dirs, env=os.environ)
    health = mcp_probe(loaded.registry, policy=HttpPolicy(tuple(settings.http_allowed_hosts)))
    for skill in loaded.registry:
        access = "everyone" if skill.access.is_open else "restricted"
        state = health[skill.name].summary() if skill.name in health else ""
        typer.echo(
            f"{skill.name:<14} {access:<10} {skill.description}"
            + (state and f"  [degraded: {state}]")
        )
    for issue in [*loaded.issues, *(i for h in health.values() for i in h.issues)]:
        typer.echo(f"error: {issue}", err=True)


@skills_app.command("show")
def skills_show(name: str) -> None:
    """Show one skill: description, model, access, tools and approval policies."""
    settings = load_settings()
    registry = load_registry(settings.skills_dirs, env=os.environ).registry
    try:
        skill = registry.get(name)
    except UnknownSkill as exc:
        fail(f"{exc}; try `switchboard skills list`", 1)
    typer.echo(describe_skill(skill, default_model=settings.model))


def describe_skill(skill: Skill, *, default_model: str) -> str:
    """A readable description of ``skill`` with secrets redacted: every value expanded
    from ``${ENV}`` shows as its ``${VAR}`` text (see ``SkillSpec.shown``)."""
    spec = skill.spec

    def shown(loc: tuple[str | int, ...], value: str) -> str:
        return spec.shown(loc, value) if spec is not None else value

    model = shown(("model",), skill.model) if skill.model else f"{default_model} (default)"
    lines = [
        f"name:        {skill.name}",
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
    issues = validate_paths(targets, env=os.environ)
    for issue in issues:
        typer.echo(str(issue))
    if issues:
        typer.echo(f"{len(issues)} error(s)", err=True)
        raise typer.Exit(1)
    typer.echo("all skill specs are valid")


@app.command()
def console(
    skill: str = typer.Option(None, "--skill", help="send every message to this skill"),
    as_user: str = typer.Option(
        "U0SAM", "--as", help="who you are in the sample workspace (e.g. U0CAROL)"
    ),
) -> None:
    """Chat with the runtime in the terminal (embedded defaults, sample Slack data)."""
    settings = load_settings()
    configure_logging("WARNING" if settings.log_level == "INFO" else settings.log_level)

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
                fail(f"there is no skill named {skill!r}; try `switchboard skills list`", 1)
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
    run_http(settings)


@app.command()
def socket() -> None:
    """Run the bot over Socket Mode (SLACK_APP_TOKEN); no public URL needed."""
    settings = load_settings("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN")
    run_socket(settings)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except ConfigError as exc:  # raised outside load_settings, e.g. by a factory
        typer.echo(f"switchboard: {exc}", err=True)
        sys.exit(2)
