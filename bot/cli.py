"""The ``switchboard`` command line.

Every command builds :class:`~bot.settings.Settings` once; a bad variable prints one line
(``PORT: invalid value …``) and exits with status 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import sys
from typing import NoReturn

import typer

from bot.settings import ConfigError, Settings

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


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except ConfigError as exc:  # raised outside load_settings, e.g. by a factory
        typer.echo(f"switchboard: {exc}", err=True)
        sys.exit(2)
