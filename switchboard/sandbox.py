"""The sandboxed bot, as the composition root builds it for ``switchboard sandbox``.

:mod:`sandbox.server` runs the local workspace and decides what the bot sees of the
environment (:class:`~sandbox.server.BotEnvironment`); :func:`open_sandbox_bot` builds the
bot from that exactly as ``switchboard serve`` does (settings, services, Bolt app, HTTP
app, scheduler and approval sweep). :func:`open_sandbox` and :func:`check_recording` are
the sandbox's own functions with this opener bound: what the command line, the tests and
the replays use.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from bot.app import Bot
from bot.http import create_http_app
from bot.slack.client import create_web_client
from evals.results import BaselineError, load_results
from sandbox import server
from sandbox.server import BotConfigError, BotEnvironment, RunningSandbox, SandboxOptions
from sandbox.skills_page import EvalSummary, SkillEntry, SkillsOverview
from scheduler.service import SchedulerService
from switchboard.serve import build_bot, metrics_listener, run_features
from switchboard.services import Services, open_services
from switchboard.settings import ConfigError, Settings

__all__ = [
    "EvalResults",
    "SandboxBot",
    "check_recording",
    "open_sandbox",
    "open_sandbox_bot",
    "run_sandbox",
    "skills_overview",
]


class EvalResults:
    """The newest evaluation summary per skill in ``folder/*/results.json`` (what
    ``switchboard eval`` writes by default), re-read only when a file changes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._read: dict[Path, tuple[float, dict[str, EvalSummary]]] = {}

    def latest(self) -> dict[str, EvalSummary]:
        try:
            files = sorted(
                ((p.stat().st_mtime, p) for p in self.folder.glob("*/results.json")),
                reverse=True,
            )
        except OSError:
            return {}
        found: dict[str, EvalSummary] = {}
        for mtime, path in files:
            for skill, summary in self._summaries(path, mtime).items():
                found.setdefault(skill, summary)
        return found

    def _summaries(self, path: Path, mtime: float) -> dict[str, EvalSummary]:
        cached = self._read.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        try:
            data = load_results(path)
        except BaselineError:
            data = {}
        skills = (data.get("summary") or {}).get("skills") or {}
        summaries: dict[str, EvalSummary] = {}
        for name, row in skills.items() if isinstance(skills, dict) else ():
            try:
                summaries[str(name)] = EvalSummary(
                    results=str(path),
                    started_at=str(data.get("started_at", "")),
                    model=str(data.get("model", "")),
                    cases=int(row["cases"]),
                    passed=int(row["passed"]),
                    pass_rate=float(row["pass_rate"]),
                    mode=str(data["mode"]) if data.get("mode") else None,
                )
            except (KeyError, TypeError, ValueError):
                continue
        self._read[path] = (mtime, summaries)
        return summaries


def skills_overview(
    services: Services, *, evals: Mapping[str, EvalSummary] | None = None
) -> SkillsOverview:
    """Every skill version served now, with its state and last evaluation."""
    registry = services.registry
    status = services.reloader.status
    kept = set(status.kept)
    entries: list[SkillEntry] = []
    for name in registry.names():
        for skill in registry.versions(name):
            health = services.runtime.mcp.health(skill)
            if skill.label in kept:
                state = "previous version (the file has errors)"
            elif health.degraded:
                state = f"degraded: {health.summary()}"
            else:
                state = "valid"
            entries.append(
                SkillEntry(
                    name=skill.name,
                    description=skill.description,
                    source=skill.source,
                    kind="python" if skill.spec is None else "yaml",
                    state=state,
                    version=skill.version,
                    canary=skill.canary if skill is registry.canary(name) else None,
                    eval=(evals or {}).get(skill.name),
                )
            )
    return SkillsOverview(
        skills=entries,
        errors=[str(issue) for issue in status.issues],
        folders=["built-ins", *(str(d) for d in services.reloader.dirs)],
        generation=status.generation,
        reloaded_at=status.at.isoformat(timespec="seconds"),
        outcome=status.outcome,
    )


@dataclass(slots=True)
class SandboxBot:
    """The sandboxed bot (a :class:`sandbox.server.HostedBot`) and its parts."""

    settings: Settings
    services: Services
    bot: Bot
    http_app: Starlette
    eval_results: EvalResults = field(default_factory=lambda: EvalResults(Path("eval-results")))
    scheduler: SchedulerService | None = field(default=None, init=False)

    @property
    def model(self) -> str:
        return self.settings.model

    @property
    def metrics_port(self) -> int | None:
        return self.settings.metrics_port

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until the bot is idle, including firings a "Run now" click asked for: the
        leader takes those from SQL and only then puts them on the run queue."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.scheduler is not None and not await self.scheduler.settled():
            if loop.time() > deadline:
                raise TimeoutError("a scheduled run is still being started")
            await asyncio.sleep(0.02)
        await self.bot.idle(max(0.01, deadline - loop.time()))

    @contextlib.asynccontextmanager
    async def features(self) -> AsyncIterator[None]:
        """What every bot process runs beside the listeners: metrics port, approval
        sweep, scheduler."""
        async with (
            metrics_listener(self.bot, host="127.0.0.1", port=self.settings.metrics_port),
            run_features(self.bot, self.services) as scheduler,
        ):
            self.scheduler = scheduler
            try:
                yield
            finally:
                self.scheduler = None

    async def drain(self, timeout: float) -> None:
        await self.bot.worker.drain(timeout=timeout)

    @property
    def skill_sources(self) -> list[str]:
        # The sandbox reads skill folders only from --skills (never SWITCHBOARD_SKILLS_DIR).
        return [
            line.replace("set SWITCHBOARD_SKILLS_DIR to add", "add --skills DIR for")
            for line in self.services.skill_sources
        ]

    def skills_overview(self) -> SkillsOverview:
        """The live registry, the reloader's last status and the newest eval results."""
        return skills_overview(self.services, evals=self.eval_results.latest())


@contextlib.asynccontextmanager
async def open_sandbox_bot(environment: BotEnvironment) -> AsyncIterator[SandboxBot]:
    """Build the sandboxed bot from ``environment``; a bad variable is a
    :class:`~sandbox.server.BotConfigError` naming it."""
    try:
        settings = Settings.from_env(environment.settings)
        settings.require("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")
    except ConfigError as exc:
        raise BotConfigError(str(exc)) from None
    assert settings.slack_bot_token is not None and settings.slack_signing_secret is not None
    token = settings.slack_bot_token.get_secret_value()
    secret = settings.slack_signing_secret.get_secret_value()
    async with open_services(settings, env=environment.skills, watch_skills=True) as services:
        client = create_web_client(token=token, base_url=settings.slack_api_url)
        bot = build_bot(services, client=client, signing_secret=secret)
        yield SandboxBot(
            settings=settings,
            services=services,
            bot=bot,
            http_app=create_http_app(
                bot,
                signing_secret=secret,
                services=services,
                serve_metrics=settings.metrics_port is None,
            ),
        )


def open_sandbox(
    options: SandboxOptions,
) -> contextlib.AbstractAsyncContextManager[RunningSandbox[SandboxBot]]:
    """:func:`sandbox.server.open_sandbox` with the production bot."""
    return server.open_sandbox(options, bots=open_sandbox_bot)


async def check_recording(path: Path, **options: Any) -> tuple[str, int]:
    """:func:`sandbox.server.check_recording` with the production bot."""
    return await server.check_recording(path, bots=open_sandbox_bot, **options)


def run_sandbox(
    options: SandboxOptions,
    *,
    echo: Callable[[str], None] = print,
    replay: Path | None = None,
) -> None:
    """:func:`sandbox.server.run_sandbox` with the production bot."""
    server.run_sandbox(options, bots=open_sandbox_bot, echo=echo, replay=replay)
