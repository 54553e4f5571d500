"""The ``switchboard`` command line.

Every command builds :class:`~bot.settings.Settings` once; a bad variable prints one line
(``PORT: invalid value …``) and exits with status 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

from bot.settings import ConfigError, Settings

if TYPE_CHECKING:
    from skills.registry import Skill

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


@app.command()
def migrate() -> None:
    """Upgrade the SQL database (DATABASE_URL) to the latest schema."""
    from storage.sql import create_engine, current_revision, upgrade

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


def _mount_features() -> None:
    from bot.audit_cli import audit_commands
    from evals.cli import eval_app
    from sandbox.cli import register as register_sandbox
    from scheduler.cli import scheduler_command, schedules_app

    app.add_typer(audit_commands(load_settings), name="audit")
    app.add_typer(eval_app, name="eval")
    app.add_typer(schedules_app, name="schedules")
    app.command("scheduler")(scheduler_command)
    register_sandbox(app)


_mount_features()


@skills_app.command("list")
def skills_list() -> None:
    """List the skills this deployment offers."""
    import os

    from skills.registry import load_registry

    settings = load_settings()
    loaded = load_registry(settings.skills_dirs, env=os.environ)
    for skill in loaded.registry:
        access = "everyone" if skill.access.is_open else "restricted"
        typer.echo(f"{skill.name:<14} {access:<10} {skill.description}")
    for issue in loaded.issues:
        typer.echo(f"error: {issue}", err=True)


@skills_app.command("show")
def skills_show(name: str) -> None:
    """Show one skill: description, model, access, tools and approval policies."""
    import os

    from skills.errors import UnknownSkill
    from skills.registry import load_registry

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
        f"memory:      {skill.memory_ttl}",
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
    import getpass
    import os

    from skills.registry import load_registry
    from storage.limits import SkillLimitsStore
    from storage.sql import create_engine, session_factory, upgrade

    settings = load_settings()
    registry = load_registry(settings.skills_dirs, env=os.environ).registry
    if name not in registry:
        fail(f"there is no skill named {name!r}; try `switchboard skills list`", 1)

    async def _flip() -> None:
        if settings.uses_embedded_sql:
            await upgrade(settings.database_url)
        engine = create_engine(settings.database_url)
        try:
            store = SkillLimitsStore(sessions=session_factory(engine))
            await store.set_enabled(name, enabled, by=f"cli:{getpass.getuser()}", reason=reason)
        finally:
            await engine.dispose()

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
    import os

    from skills.spec import builtin_dir, validate_paths

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
    from bot.console import ConsoleSession, run_console
    from bot.logs import configure_logging
    from bot.services import open_services
    from skills.context import Actor
    from skills.models import ModelConfigError
    from skills.sample import StaticSlackReader

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
    from bot.serve import run_http

    settings = load_settings("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")
    run_http(settings)


@app.command()
def socket() -> None:
    """Run the bot over Socket Mode (SLACK_APP_TOKEN); no public URL needed."""
    from bot.serve import run_socket

    settings = load_settings("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN")
    run_socket(settings)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except ConfigError as exc:  # raised outside load_settings, e.g. by a factory
        typer.echo(f"switchboard: {exc}", err=True)
        sys.exit(2)
