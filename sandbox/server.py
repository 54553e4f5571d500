"""Wires the sandbox: one HTTP server on 127.0.0.1 hosting the bot, the emulator and the page.

    /slack/events, /healthz, /readyz, /metrics   the bot's own HTTP app, unchanged
    /api/{method}                                the Web API emulator (SLACK_API_URL)
    /hooks/{token}                               response_url for commands and clicks
    /crm/…                                       the demo CRM (CRM_URL for the skills)
    /, /sandbox/…, /static/…                     the page, its JSON API, live updates

The bot runs exactly as ``switchboard serve`` runs it: it receives signed requests and
calls the Web API through its retrying client; only the URLs point here. The sandbox does
not build the bot itself: the composition root hands :func:`open_sandbox` a
:data:`BotOpener` (``switchboard.sandbox``) that builds it from the environment the sandbox
chooses (:class:`BotEnvironment`), so this package never imports ``bot`` or
``switchboard``. The sandbox uses
its own SQLite file and in-process Redis under ``state_dir`` (never ``DATABASE_URL`` or
``REDIS_URL``, so it cannot touch real data), its own random signing secret and bot token,
and the model from ``SWITCHBOARD_MODEL`` (default: ``offline``).

The sandboxed bot does not see the developer's shell: only the variables in
:data:`ALLOWED_ENV` (the model and provider settings, the ``SWITCHBOARD_*`` options that
make sense here) plus those named with ``--env NAME`` reach its settings, its skills'
``${VAR}`` expansion and its model clients; ``--inherit-env`` passes everything, as before.
The page and its API need the per-run token printed in the URL, and the whole server
refuses foreign ``Host`` names and cross-origin requests (see :mod:`sandbox.web`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from sandbox import crm as crm_module
from sandbox import web
from sandbox import workspace as workspace_api
from sandbox.actions import Actions
from sandbox.crm import DemoCrm
from sandbox.events import EventSender
from sandbox.record import Recorder, compare, read_recording, shift_workspace
from sandbox.record import replay as _perform
from sandbox.seed import load_state, save_state, seed_file, seed_sample
from sandbox.skills_page import SkillsOverview
from sandbox.web import TOKEN_HEADER
from sandbox.workspace import ApiCall, Emulator, RateLimit

__all__ = [
    "ALLOWED_ENV",
    "BotConfigError",
    "BotEnvironment",
    "BotOpener",
    "HostedBot",
    "RunningSandbox",
    "SandboxOptions",
    "open_sandbox",
    "run_sandbox",
    "sandbox_environment",
]

log = logging.getLogger(f"switchboard.{__name__}")

DEFAULT_STATE_DIR = Path(".switchboard-sandbox")
SAVE_EVERY = 2.0

ALLOWED_ENV = frozenset(
    {
        # the model, and the provider settings its clients read (skills/models/_loader.py)
        "SWITCHBOARD_MODEL",
        "SWITCHBOARD_ROUTER_MODEL",
        "SWITCHBOARD_FALLBACK_MODELS",
        "SWITCHBOARD_MODEL_TIMEOUT",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_API_BASE",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_CLOUD_PROJECT",
        "GOOGLE_CLOUD_LOCATION",
        "OLLAMA_HOST",
        # Switchboard options that change how the sandboxed bot behaves
        "SWITCHBOARD_STREAMING",
        "SWITCHBOARD_LOG_LEVEL",
        "SWITCHBOARD_LINK_DOMAINS",
        "SWITCHBOARD_HTTP_ALLOWED_HOSTS",
        "SWITCHBOARD_APPROVAL_DMS",
        "SWITCHBOARD_APPROVAL_SWEEP",
        "SWITCHBOARD_MAX_CONCURRENT_RUNS",
        "SWITCHBOARD_MEMORY_TTL",
        "SWITCHBOARD_MAX_CHECKPOINTS",
        "SWITCHBOARD_WEEKEND",
        "SWITCHBOARD_HOLIDAYS",
        "SWITCHBOARD_SCHEDULE_MAX_FAILURES",
        "SWITCHBOARD_EVAL_SAMPLE",  # online evaluation: `eval stats --sandbox` shows it
        "SWITCHBOARD_JUDGE_MODEL",
        "METRICS_PORT",
    }
)
"""What the sandboxed bot sees of the developer's environment without ``--inherit-env``.

Not here on purpose: Slack tokens, ``DATABASE_URL``/``REDIS_URL`` (the sandbox has its
own), ``SWITCHBOARD_SKILLS_DIR`` (use ``--skills DIR``: production skill folders and the
CRM tokens their specs expand must not come along unasked) and every other secret.
"""


@dataclass(frozen=True, slots=True)
class SandboxOptions:
    """How to run the sandbox. ``port=0`` picks a free port (tests, replays).

    ``workspace`` (a saved snapshot) wins over ``seed``, which wins over the saved state,
    which wins over the built-in sample. ``persist=False`` neither loads nor saves state.
    """

    port: int = 3000
    state_dir: Path = DEFAULT_STATE_DIR
    seed: Path | None = None
    reset: bool = False
    record: Path | None = None
    workspace: Mapping[str, Any] | None = None
    persist: bool = True
    env: Mapping[str, str] | None = None
    inherit_env: bool = False
    pass_env: tuple[str, ...] = ()
    skills_dirs: tuple[Path, ...] = ()
    rate_limit: RateLimit | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class BotEnvironment:
    """What the sandboxed bot is built from: the variables its settings are read from, and
    the environment its skill specs expand ``${VAR}`` from."""

    settings: dict[str, str]
    skills: dict[str, str]


class BotConfigError(Exception):
    """The sandboxed bot's configuration is invalid; the message is one line naming the
    variable (raised by the :data:`BotOpener`)."""


class HostedBot(Protocol):
    """The bot as the sandbox hosts it (built by the composition root)."""

    @property
    def http_app(self) -> ASGIApp:
        """``/slack/events``, ``/healthz``, ``/readyz`` (and ``/metrics``)."""
        ...

    @property
    def model(self) -> str:
        """The default model, shown in the start-up line."""
        ...

    @property
    def metrics_port(self) -> int | None:
        """``METRICS_PORT``, when ``/metrics`` is served on its own port."""
        ...

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until the bot has no background work left."""
        ...

    def features(self) -> AbstractAsyncContextManager[None]:
        """What runs beside the listeners (metrics port, approval sweep, scheduler)."""
        ...

    async def drain(self, timeout: float) -> None:
        """Finish (or cancel, after ``timeout``) the bot's background work."""
        ...

    def skills_overview(self) -> SkillsOverview:
        """The skills as loaded now, spec problems and last evaluations (the Skills page)."""
        ...

    @property
    def skill_sources(self) -> list[str]:
        """Which skills were loaded and from where, printed at start."""
        ...


H = TypeVar("H", bound=HostedBot)
#: Builds and closes the sandboxed bot (the composition root's ``switchboard.sandbox``).
BotOpener = Callable[[BotEnvironment], AbstractAsyncContextManager[H]]


@dataclass(slots=True)
class RunningSandbox(Generic[H]):
    """A started sandbox: where it is and its parts (tests and replays drive these)."""

    url: str
    token: str
    emulator: Emulator
    actions: Actions
    crm: DemoCrm
    host: H
    server: uvicorn.Server
    calls: list[ApiCall] = field(default_factory=list)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def page_url(self) -> str:
        """The page's address with this run's token (what ``switchboard sandbox`` prints)."""
        return f"{self.url}/?token={self.token}"

    @property
    def auth_headers(self) -> dict[str, str]:
        """Headers that authorize a script's calls to the page's JSON API."""
        return {TOKEN_HEADER: self.token}

    def stop(self) -> None:
        """Ask the server to stop (a second call stops without waiting for connections)."""
        if self.server.should_exit:
            self.server.force_exit = True
        self.server.should_exit = True
        self.stopped.set()

    async def wait_closed(self) -> None:
        await self.stopped.wait()


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handling: :func:`run_sandbox` owns Ctrl-C, so
    shutdown can drain the bot and save the workspace before the process ends."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def reset_state(state_dir: Path) -> bool:
    """Delete the sandbox's own state folder; True when there was one."""
    if not state_dir.exists():
        return False
    if not (state_dir / ".switchboard-sandbox").exists():
        # Refuse to delete a folder the sandbox did not create (a mistyped --state-dir).
        raise ValueError(f"{state_dir} does not look like a sandbox state folder")
    shutil.rmtree(state_dir)
    return True


def _prepare_state_dir(state_dir: Path) -> None:
    # Only the developer may read it: the SQLite file and the saved workspace are there.
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    marker = state_dir / ".switchboard-sandbox"
    if not marker.exists():
        marker.write_text("state of `switchboard sandbox`; delete with --reset\n")
    ignore = state_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.setblocking(False)
    return sock


def sandbox_environment(
    env: Mapping[str, str],
    *,
    inherit: bool = False,
    names: Iterable[str] = (),
    skills_dirs: Iterable[Path] = (),
) -> dict[str, str]:
    """The environment the sandboxed bot gets: :data:`ALLOWED_ENV` and ``names`` from
    ``env`` (everything with ``inherit``), and ``skills_dirs`` as SWITCHBOARD_SKILLS_DIR."""
    wanted = ALLOWED_ENV | {n.strip() for n in names if n.strip()}
    chosen = dict(env) if inherit else {k: v for k, v in env.items() if k in wanted}
    dirs = [str(d) for d in skills_dirs]
    if dirs:
        existing = chosen.get("SWITCHBOARD_SKILLS_DIR", "")
        chosen["SWITCHBOARD_SKILLS_DIR"] = ":".join([*([existing] if existing else []), *dirs])
    return chosen


def bot_environment(
    env: Mapping[str, str], *, url: str, token: str, secret: str, database: Path
) -> BotEnvironment:
    """What the sandboxed bot's settings and skills are read from."""
    skill_env = dict(env)
    skill_env.setdefault("CRM_URL", f"{url}/crm")
    # The demo CRM lives on this loopback server: HTTP tools may reach it (this port only).
    allowed = [env.get("SWITCHBOARD_HTTP_ALLOWED_HOSTS", ""), urlsplit(url).netloc]
    overrides = {
        "SWITCHBOARD_HTTP_ALLOWED_HOSTS": ",".join(entry for entry in allowed if entry),
        "SLACK_BOT_TOKEN": token,
        "SLACK_SIGNING_SECRET": secret,
        "SLACK_API_URL": f"{url}/api/",
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "REDIS_URL": "",
        "HOST": "127.0.0.1",
    }
    overrides.pop("PORT", None)
    merged = {k: v for k, v in skill_env.items() if k not in {"PORT"}}
    return BotEnvironment(settings={**merged, **overrides}, skills=skill_env)


def _seed(emulator: Emulator, options: SandboxOptions, saved: Path) -> str:
    now = options.now()
    if options.workspace is not None:
        emulator.load(options.workspace)
        return "recorded workspace"
    if options.seed is not None:
        seed_file(emulator, options.seed, now)
        return f"seed file {options.seed}"
    if options.persist and load_state(emulator, saved):
        return f"saved state in {saved.parent}"
    seed_sample(emulator, now)
    return "built-in sample workspace"


@contextlib.asynccontextmanager
async def open_sandbox(
    options: SandboxOptions, *, bots: BotOpener[H]
) -> AsyncIterator[RunningSandbox[H]]:
    """Start everything; on exit stop the server, drain the bot and save the workspace.

    ``bots`` builds the bot from the :class:`BotEnvironment` chosen here."""
    env = sandbox_environment(
        os.environ if options.env is None else options.env,
        inherit=options.inherit_env,
        names=options.pass_env,
        skills_dirs=options.skills_dirs,
    )
    if options.reset:
        reset_state(options.state_dir)
    _prepare_state_dir(options.state_dir)
    sock = _bind(options.port)
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    token = "xoxb-sandbox-" + secrets.token_hex(12)
    secret = secrets.token_hex(16)
    access = web.Access(token=secrets.token_urlsafe(24), cookie=f"switchboard_sandbox_{port}")
    saved = options.state_dir / "workspace.json"
    try:
        environment = bot_environment(
            env, url=url, token=token, secret=secret, database=options.state_dir / "sandbox.db"
        )
        emulator = Emulator(token=token, rate_limit=options.rate_limit)
        source = _seed(emulator, options, saved)
        log.info("sandbox workspace: %s", source)
    except BaseException:
        sock.close()
        raise
    crm = DemoCrm.sample()
    hub = web.Hub()
    emulator.listeners.append(hub.publish)
    dirty = asyncio.Event()
    emulator.listeners.append(lambda _change: dirty.set())
    recorder: Recorder | None = None
    http = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0))
    try:
        async with bots(environment) as host:
            recorder = (
                Recorder(options.record, workspace=emulator.snapshot(), started=time.time())
                if options.record is not None
                else None
            )
            sender = EventSender(
                url=f"{url}/slack/events",
                signing_secret=secret,
                team_id=emulator.team_id,
                app_id=emulator.app_id,
                bot_user_id=emulator.bot_user_id,
                http=http,
                observers=[recorder.inbound] if recorder is not None else (),
            )
            actions = Actions(
                emulator=emulator,
                sender=sender,
                hooks_url=f"{url}/hooks/",
                idle=host.idle,
                observers=[recorder.action] if recorder is not None else (),
            )
            if recorder is not None:
                emulator.call_listeners.append(recorder.call)
            app = Starlette(
                routes=_routes(
                    emulator=emulator,
                    actions=actions,
                    hub=hub,
                    crm=crm,
                    access=access,
                    bot_app=host.http_app,
                    skills=host.skills_overview,
                )
            )
            guarded = web.HostGuard(app, hosts=["127.0.0.1"])
            config = uvicorn.Config(
                guarded,
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=2,
            )
            server = _Server(config)
            running = RunningSandbox(
                url=url,
                token=access.token,
                emulator=emulator,
                actions=actions,
                crm=crm,
                host=host,
                server=server,
            )
            emulator.call_listeners.append(running.calls.append)
            serving = asyncio.create_task(server.serve(sockets=[sock]), name="sandbox-server")
            serving.add_done_callback(lambda _task: running.stopped.set())
            # What every bot process runs beside the listeners: approval sweep, scheduler.
            features = contextlib.AsyncExitStack()
            await features.enter_async_context(host.features())
            saver = asyncio.create_task(
                _save_loop(emulator, saved, dirty) if options.persist else asyncio.sleep(0),
                name="sandbox-saver",
            )
            try:
                while not server.started:
                    if serving.done():
                        serving.result()  # raise what stopped it
                        raise RuntimeError("the sandbox server stopped while starting")
                    await asyncio.sleep(0.02)
                yield running
            finally:
                hub.close()
                # Let work in flight (a turn, a queued firing) finish while the emulated
                # Web API still answers; only then stop serving it.
                try:
                    await actions.settle(timeout=10)
                except TimeoutError:
                    log.warning("sandbox stopping with work still running; it is cancelled")
                server.should_exit = True
                with contextlib.suppress(asyncio.CancelledError):
                    await serving
                await features.aclose()
                await host.drain(timeout=10)
                saver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await saver
                if options.persist:
                    save_state(emulator, saved)
    finally:
        sock.close()
        await http.aclose()
        if recorder is not None:
            recorder.close()


async def _save_loop(emulator: Emulator, path: Path, dirty: asyncio.Event) -> None:
    while True:
        await dirty.wait()
        dirty.clear()
        await asyncio.sleep(SAVE_EVERY)
        try:
            save_state(emulator, path)
        except OSError as exc:
            log.warning("could not save the sandbox workspace: %s", exc)


def _routes(
    *,
    emulator: Emulator,
    actions: Actions,
    hub: web.Hub,
    crm: DemoCrm,
    access: web.Access,
    bot_app: ASGIApp,
    skills: Callable[[], SkillsOverview],
) -> list[BaseRoute]:
    async def hook(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return JSONResponse({"ok": False, "error": "invalid_payload"}, status_code=400)
        answer = emulator.hook(request.path_params["token"], body)
        return JSONResponse(answer, status_code=200 if answer.get("ok") else 404)

    return [
        Mount("/api", routes=workspace_api.routes(emulator)),
        Mount("/crm", routes=crm_module.routes(crm)),
        Route("/hooks/{token}", hook, methods=["POST"]),
        *web.routes(emulator=emulator, actions=actions, hub=hub, access=access, skills=skills),
        Mount("", app=bot_app),
    ]


def run_sandbox(
    options: SandboxOptions,
    *,
    bots: BotOpener[Any],
    echo: Callable[[str], None] = print,
    replay: Path | None = None,
) -> None:
    """``switchboard sandbox``: serve until Ctrl-C; prints the page's URL, opens nothing.

    With ``replay``, the recorded session is performed again once the page is up, so it
    can be watched, and the sandbox keeps serving afterwards.
    """
    recording = None
    mapping: dict[str, str] = {}
    if replay is not None:
        recording = read_recording(replay)
        shifted = shift_workspace(recording.workspace, time.time() - recording.started, mapping)
        options = replace(options, workspace=shifted, persist=False)

    async def _main() -> None:
        async with open_sandbox(options, bots=bots) as sandbox:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, sandbox.stop)
            model = sandbox.host.model
            for line in sandbox.host.skill_sources:
                echo(line)
            echo(f"Switchboard sandbox: open {sandbox.page_url}  (model: {model}; Ctrl-C to stop)")
            echo(f"skills and their state: {sandbox.url}/skills?token={sandbox.token}")
            if sandbox.host.metrics_port is not None:
                echo(f"metrics on http://127.0.0.1:{sandbox.host.metrics_port}/metrics")
            if options.record is not None:
                echo(f"recording the session to {options.record}")
            if recording is not None:
                echo(f"replaying {replay} …")
                steps = await _perform(
                    recording, sandbox.actions, mapping=mapping, calls=sandbox.calls
                )
                echo(f"replayed {len(steps)} steps; the sandbox keeps running")
            await sandbox.wait_closed()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())


async def check_recording(
    path: Path,
    *,
    bots: BotOpener[Any],
    env: Mapping[str, str] | None = None,
    state_dir: Path | None = None,
    inherit_env: bool = False,
) -> tuple[str, int]:
    """Replay ``path`` against the current bot, headless; (diff, number of steps).

    The diff is empty when the bot sent the same as when the session was recorded.
    """
    recording = read_recording(path)
    mapping: dict[str, str] = {}
    workspace = shift_workspace(recording.workspace, time.time() - recording.started, mapping)
    with tempfile.TemporaryDirectory(prefix="switchboard-replay-") as tmp:
        options = SandboxOptions(
            port=0,
            state_dir=state_dir or Path(tmp) / "state",
            workspace=workspace,
            persist=False,
            env=env,
            inherit_env=inherit_env,
        )
        async with open_sandbox(options, bots=bots) as sandbox:
            steps = await _perform(recording, sandbox.actions, mapping=mapping, calls=sandbox.calls)
    return compare(recording.steps, steps), len(steps)
