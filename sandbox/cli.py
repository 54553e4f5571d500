"""``switchboard sandbox``: the local workspace in the browser, record and replay.

Mounted by the composition root with :func:`register`, which hands it the bot opener
(how the sandboxed bot is built) and the process's logging set-up.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from sandbox.record import ReplayError
from sandbox.seed import SeedError
from sandbox.server import (
    BotConfigError,
    BotOpener,
    SandboxOptions,
    check_recording,
    reset_state,
    run_sandbox,
)

__all__ = ["register", "sandbox_command"]


def sandbox_command(
    bots: BotOpener[Any], configure_logging: Callable[[str], None]
) -> Callable[..., None]:
    """The ``sandbox`` command, building its bot with ``bots``."""

    def sandbox(
        port: int = typer.Option(3000, "--port", min=0, max=65535, help="port on 127.0.0.1"),
        seed: Path | None = typer.Option(  # noqa: B008 - typer's declaration style
            None, "--seed", help="a YAML/JSON workspace to start from instead of the sample"
        ),
        reset: bool = typer.Option(False, "--reset", help="delete the sandbox's saved state first"),
        record: Path | None = typer.Option(  # noqa: B008
            None, "--record", help="save the session (actions, payloads, API calls) to FILE"
        ),
        replay: Path | None = typer.Option(  # noqa: B008
            None, "--replay", help="replay a recorded session against the current bot"
        ),
        check: bool = typer.Option(
            False, "--check", help="with --replay: no page; exit 1 and print a diff on changes"
        ),
        state_dir: Path = typer.Option(  # noqa: B008
            Path(".switchboard-sandbox"), "--state-dir", help="where the sandbox keeps its state"
        ),
        skills: list[Path] = typer.Option(  # noqa: B008
            [], "--skills", help="also load the skill specs in DIR (repeatable)"
        ),
        pass_env: list[str] = typer.Option(  # noqa: B008
            [],
            "--env",
            help="pass the variable NAME from your shell to the bot (repeatable), e.g. CRM_TOKEN",
        ),
        inherit_env: bool = typer.Option(
            False,
            "--inherit-env",
            help="give the bot your whole shell environment (default: only model settings)",
        ),
    ) -> None:
        """A local Slack workspace in the browser with the bot connected (zero config)."""
        level = os.environ.get("SWITCHBOARD_LOG_LEVEL", "WARNING").upper()
        configure_logging(level if level in {"DEBUG", "INFO", "WARNING", "ERROR"} else "WARNING")
        if check and replay is None:
            _fail("--check needs --replay FILE")
        try:
            if replay is not None and check:
                diff, steps = asyncio.run(
                    check_recording(replay, bots=bots, inherit_env=inherit_env)
                )
                if diff:
                    typer.echo(f"the bot now answers differently from {replay}:\n")
                    typer.echo(diff)
                    raise typer.Exit(1)
                typer.echo(f"replay matches {replay} ({steps} steps)")
                return
            if os.environ.get("SWITCHBOARD_SKILLS_DIR") and not skills:
                typer.echo(
                    "note: the sandbox does not read SWITCHBOARD_SKILLS_DIR (production "
                    "folders and their tokens stay out unless asked); to load them: "
                    "switchboard sandbox --skills DIR",
                    err=True,
                )
            if reset and reset_state(state_dir):
                typer.echo(f"deleted the sandbox state in {state_dir}")
            options = SandboxOptions(
                port=port,
                seed=seed,
                record=record,
                state_dir=state_dir,
                inherit_env=inherit_env,
                pass_env=tuple(pass_env),
                skills_dirs=tuple(skills),
            )
            run_sandbox(options, bots=bots, echo=typer.echo, replay=replay)
        except BotConfigError as exc:
            _fail(str(exc))
        except (SeedError, ReplayError, ValueError) as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(f"cannot start the sandbox on port {port}: {exc.strerror or exc}", 1)

    return sandbox


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"switchboard: {message}", err=True)
    raise typer.Exit(code)


def register(
    app: typer.Typer, *, bots: BotOpener[Any], configure_logging: Callable[[str], None]
) -> None:
    """Add ``sandbox`` to the ``switchboard`` command line."""
    app.command("sandbox")(sandbox_command(bots, configure_logging))
