"""``switchboard schedules …`` for operators, and ``switchboard scheduler``.

    switchboard schedules add SKILL --channel C --when WHEN [--text T] [--tz TZ]
    switchboard schedules list [--channel C]
    switchboard schedules pause|resume|delete|run ID

Changes are written to SQL and announced to the leader (Redis pub/sub), exactly as from
Slack. ``switchboard scheduler`` runs only the scheduler (leader election included), for
deployments that keep it out of the web processes. Settings come from the environment via
``bot.cli.load_settings`` (imported lazily: the CLI is the composition root).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import typer

from scheduler.errors import SchedulerError
from scheduler.feed import ChangeFeed
from scheduler.manage import STANDUP, ScheduleManager, StandupOptions
from scheduler.triggers import format_run_time

T = TypeVar("T")

schedules_app = typer.Typer(
    help="Add, list, pause, resume, delete and run schedules.", no_args_is_help=True
)


@contextlib.asynccontextmanager
async def _manager() -> AsyncIterator[ScheduleManager]:
    from bot.cli import load_settings
    from scheduler.calendar import BusinessCalendar
    from skills.registry import load_registry
    from storage.keys import Keys
    from storage.redis import create_redis
    from storage.schedules import ScheduleStore
    from storage.sql import create_engine, session_factory, upgrade

    settings = load_settings()
    if settings.uses_embedded_sql:
        await upgrade(settings.database_url)
    registry = load_registry(settings.skills_dirs, env=os.environ).registry
    engine = create_engine(settings.database_url)
    redis = create_redis(settings.redis_url)
    try:
        yield ScheduleManager(
            store=ScheduleStore(sessions=session_factory(engine)),
            feed=ChangeFeed(redis=redis, keys=Keys(prefix=settings.redis_prefix)),
            skills=lambda: [skill.name for skill in registry],
            calendar=BusinessCalendar.from_config(
                weekend=getattr(settings, "weekend", "sat-sun"),
                holidays=getattr(settings, "holidays", ()),
            ),
        )
    finally:
        await redis.aclose()
        await engine.dispose()


def _run(work: Callable[[ScheduleManager], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _manager() as manager:
            return await work(manager)

    try:
        return asyncio.run(main())
    except SchedulerError as exc:
        typer.echo(f"switchboard: {exc}", err=True)
        raise typer.Exit(1) from None


@schedules_app.command("add")
def add(
    skill: str = typer.Argument(..., help="skill name, or `standup`"),
    channel: str = typer.Option(..., "--channel", help="channel id the results go to"),
    when: str = typer.Option(..., "--when", help="e.g. 'every weekday at 9:00' or '0 9 * * 1-5'"),
    text: str = typer.Option("", "--text", help="the input the skill gets each time"),
    tz: str = typer.Option("UTC", "--tz", help="IANA time zone, e.g. Asia/Dubai"),
    owner: str = typer.Option("cli", "--owner", help="Slack user id told about failures"),
    team: str = typer.Option("T0", "--team", help="Slack team id"),
    usergroup: str = typer.Option("", "--usergroup", help="stand-up: the user group to ask"),
    window: int = typer.Option(120, "--window", help="stand-up: minutes to collect answers"),
) -> None:
    """Add a schedule; prints its id, what it does and its next three runs."""
    from datetime import timedelta

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


@schedules_app.command("list")
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


@schedules_app.command("pause")
def pause(schedule_id: str) -> None:
    """Pause a schedule (by id or a unique id prefix)."""
    _change("pause", schedule_id)


@schedules_app.command("resume")
def resume(schedule_id: str) -> None:
    """Resume a paused schedule; runs that fell in the pause are not made up."""
    _change("resume", schedule_id)


@schedules_app.command("delete")
def delete(schedule_id: str) -> None:
    """Delete a schedule and its run history."""
    _change("delete", schedule_id)


@schedules_app.command("run")
def run(schedule_id: str) -> None:
    """Run a schedule once now (the leader picks it up within a second)."""
    _change("run", schedule_id)


def scheduler_command() -> None:
    """Run only the scheduler: leader election, timing, firings (needs SLACK_BOT_TOKEN)."""
    from bot.cli import load_settings
    from bot.logs import configure_logging
    from bot.schedules import create_scheduler
    from bot.services import open_services
    from bot.slack.client import create_web_client

    settings = load_settings("SLACK_BOT_TOKEN")
    configure_logging(settings.log_level, fmt=settings.log_format)
    token = settings.slack_bot_token

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with open_services(settings) as services:
            client = create_web_client(
                token=token.get_secret_value() if token else "", base_url=settings.slack_api_url
            )
            scheduler = create_scheduler(
                services,
                client=client,
                weekend=getattr(settings, "weekend", "sat-sun"),
                holidays=getattr(settings, "holidays", ()),
                max_failures=getattr(settings, "schedule_max_failures", 5),
            )
            async with scheduler:
                await stop.wait()

    asyncio.run(main())
