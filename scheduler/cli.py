"""``switchboard schedules …`` for operators, and ``switchboard scheduler``.

    switchboard schedules add SKILL --channel C --when WHEN [--text T] [--tz TZ]
    switchboard schedules list [--channel C]
    switchboard schedules pause|resume|delete|run ID

Changes are written to SQL and announced to the leader (Redis pub/sub), exactly as from
Slack. ``switchboard scheduler`` runs only the scheduler (leader election included), for
deployments that keep it out of the web processes. The composition root mounts these
commands with :func:`register` and hands them how to open a schedule manager and a
scheduler (settings, SQL, Redis, the Slack client are its business, not this package's).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import TypeVar

import typer

from scheduler.errors import SchedulerError
from scheduler.manage import STANDUP, ScheduleManager, StandupOptions
from scheduler.service import SchedulerService
from scheduler.triggers import format_run_time

__all__ = ["ManagerOpener", "SchedulerOpener", "register", "scheduler_command", "schedules_app"]

T = TypeVar("T")

#: Opens a schedule manager over the deployment's stores (exits 2 on a bad variable).
ManagerOpener = Callable[[], AbstractAsyncContextManager[ScheduleManager]]
#: Opens this process's scheduler, not yet started (exits 2 on a bad variable).
SchedulerOpener = Callable[[], AbstractAsyncContextManager[SchedulerService]]


def schedules_app(open_manager: ManagerOpener) -> typer.Typer:
    """The ``schedules`` command group over the managers ``open_manager`` opens."""
    app = typer.Typer(
        help="Add, list, pause, resume, delete and run schedules.", no_args_is_help=True
    )

    def _run(work: Callable[[ScheduleManager], Awaitable[T]]) -> T:
        async def main() -> T:
            async with open_manager() as manager:
                return await work(manager)

        try:
            return asyncio.run(main())
        except SchedulerError as exc:
            typer.echo(f"switchboard: {exc}", err=True)
            raise typer.Exit(1) from None

    @app.command("add")
    def add(
        skill: str = typer.Argument(..., help="skill name, or `standup`"),
        channel: str = typer.Option(..., "--channel", help="channel id the results go to"),
        when: str = typer.Option(
            ..., "--when", help="e.g. 'every weekday at 9:00' or '0 9 * * 1-5'"
        ),
        text: str = typer.Option("", "--text", help="the input the skill gets each time"),
        tz: str = typer.Option("UTC", "--tz", help="IANA time zone, e.g. Asia/Dubai"),
        owner: str = typer.Option("cli", "--owner", help="Slack user id told about failures"),
        team: str = typer.Option("T0", "--team", help="Slack team id"),
        usergroup: str = typer.Option("", "--usergroup", help="stand-up: the user group to ask"),
        window: int = typer.Option(120, "--window", help="stand-up: minutes to collect answers"),
    ) -> None:
        """Add a schedule; prints its id, what it does and its next three runs."""
        standup = None
        if skill.lower() == STANDUP:
            standup = StandupOptions(
                usergroup=usergroup,
                window=timedelta(minutes=window),
                prompt=text or StandupOptions(usergroup=usergroup).prompt,
            )

        async def work(manager: ScheduleManager) -> str:
            created = await manager.create(
                team=team,
                owner=owner,
                channel=channel,
                skill=skill,
                when=when,
                tz=tz,
                text="" if standup else text,
                standup=standup,
            )
            return f"{created.schedule.id}\n{created.echo}"

        typer.echo(_run(work))

    @app.command("list")
    def list_(channel: str = typer.Option(None, "--channel", help="only this channel")) -> None:
        """List schedules: id, state, skill, channel, what, next run, last status."""

        async def work(manager: ScheduleManager) -> list[str]:
            rows = await manager.store.list_schedules(channel=channel)
            lines = []
            for row in rows:
                upcoming = manager.next_runs(row, 1)
                next_run = format_run_time(upcoming[0], row.tz) if upcoming else "-"
                state = "enabled" if row.enabled else "paused"
                lines.append(
                    f"{row.id}  {state:<7} {row.skill:<10} {row.channel_id:<12} "
                    f"{manager.summary(row).split(' → ')[0]}  next: {next_run}  "
                    f"last: {row.last_status or '-'}"
                )
            return lines

        for line in _run(work) or ["no schedules"]:
            typer.echo(line)

    def _change(verb: str, schedule_id: str) -> None:
        async def work(manager: ScheduleManager) -> str:
            action = {
                "pause": manager.pause,
                "resume": manager.resume,
                "delete": manager.delete,
                "run": manager.run_now,
            }[verb]
            row = await action(schedule_id, by="cli", admin=True)  # operators administer all
            return row.id

        done = {"pause": "paused", "resume": "resumed", "delete": "deleted", "run": "run requested"}
        typer.echo(f"{_run(work)} {done[verb]}")

    @app.command("pause")
    def pause(schedule_id: str) -> None:
        """Pause a schedule (by id or a unique id prefix)."""
        _change("pause", schedule_id)

    @app.command("resume")
    def resume(schedule_id: str) -> None:
        """Resume a paused schedule; runs that fell in the pause are not made up."""
        _change("resume", schedule_id)

    @app.command("delete")
    def delete(schedule_id: str) -> None:
        """Delete a schedule and its run history."""
        _change("delete", schedule_id)

    @app.command("run")
    def run(schedule_id: str) -> None:
        """Run a schedule once now (the leader picks it up within a second)."""
        _change("run", schedule_id)

    return app


def scheduler_command(open_scheduler: SchedulerOpener) -> Callable[[], None]:
    """The ``scheduler`` command: the scheduler ``open_scheduler`` opens, until SIGTERM."""

    def scheduler() -> None:
        """Run only the scheduler: leader election, timing, firings (needs SLACK_BOT_TOKEN)."""

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            async with open_scheduler() as service, service:
                await stop.wait()

        asyncio.run(main())

    return scheduler


def register(
    app: typer.Typer, *, open_manager: ManagerOpener, open_scheduler: SchedulerOpener
) -> None:
    """Add ``schedules …`` and ``scheduler`` to the ``switchboard`` command line."""
    app.add_typer(schedules_app(open_manager), name="schedules")
    app.command("scheduler")(scheduler_command(open_scheduler))
