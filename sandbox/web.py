"""The page: static files, a small JSON API for it, and live updates over Server-Sent Events.

``GET /`` is the page; ``GET /sandbox/state?user=U…`` what one person sees; ``POST
/sandbox/say|click|submit|close|home|assistant`` what they do; ``GET /sandbox/events`` the
stream of :class:`~sandbox.workspace.Change` values (the page drops what is meant for
somebody else). Nothing here renders the bot's text: the page does, without ``innerHTML``.

The sandbox listens on 127.0.0.1, but every web page the developer has open can send
requests there, so the page and its API are guarded (:class:`Access`):

* **A per-run token.** The URL ``switchboard sandbox`` prints carries ``?token=…``; the
  first load trades it for an ``HttpOnly``, ``SameSite=Strict`` cookie and redirects to
  the same URL without it. The page and every ``/sandbox/…`` call need the cookie (or an
  ``X-Sandbox-Token`` header, for scripts): without it, 401.
* **JSON only.** ``POST /sandbox/…`` needs ``Content-Type: application/json`` (415
  otherwise), which a cross-origin page cannot send without a CORS preflight that is never
  granted — no ``text/plain`` form posts.
* **Host and Origin** (:class:`HostGuard`, around the whole sandbox server): a ``Host``
  other than 127.0.0.1, localhost, [::1] or the bind host is a 421 (DNS rebinding), and a
  request whose ``Origin`` is not the sandbox's own is a 403 (CSRF).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox.actions import ActionError, Actions
from sandbox.skills_page import SkillsOverview
from sandbox.workspace import Change, Emulator

__all__ = ["Access", "HostGuard", "Hub", "routes"]

log = logging.getLogger(f"switchboard.{__name__}")

STATIC = Path(__file__).parent / "static"
HEARTBEAT_SECONDS = 15.0
QUEUE_SIZE = 1000


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
TOKEN_HEADER = "x-sandbox-token"


def _hostname(host_header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:3000`` → ``::1``)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class HostGuard:
    """ASGI middleware around the whole sandbox: known ``Host`` names only (421), and no
    request from a foreign ``Origin`` (403). Same-origin requests carry ``Origin:
    http://<Host>``; non-browser clients (the bot, the emulator) send none."""

    def __init__(self, app: ASGIApp, *, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = frozenset(h.lower() for h in (*LOCAL_HOSTS, *hosts))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        refusal: Response | None = None
        if _hostname(host) not in self.hosts:
            log.warning("sandbox refused a request for host %r (not a local name)", host[:100])
            refusal = PlainTextResponse(
                "This sandbox answers only on 127.0.0.1 or localhost.\n", status_code=421
            )
        else:
            origin = headers.get("origin")
            if origin is not None and origin.lower() != f"http://{host.lower()}":
                log.warning("sandbox refused a cross-origin request from %r", origin[:100])
                refusal = PlainTextResponse(
                    "Cross-origin requests to the sandbox are refused.\n", status_code=403
                )
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


@dataclass(frozen=True, slots=True)
class Access:
    """The per-run token of one sandbox and the cookie the page keeps it in."""

    token: str
    cookie: str = "switchboard_sandbox"

    def allows(self, request: Request) -> bool:
        given = request.headers.get(TOKEN_HEADER) or request.cookies.get(self.cookie) or ""
        return hmac.compare_digest(given.encode(), self.token.encode())

    def denied(self) -> Response:
        return JSONResponse(
            {
                "error": "this sandbox needs its token: open the URL that "
                "`switchboard sandbox` printed (it ends in ?token=…)"
            },
            status_code=401,
        )


class Hub:
    """Fans workspace changes out to every open page (one bounded queue per page)."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Change | None]] = set()

    def publish(self, change: Change) -> None:
        for queue in list(self._queues):
            try:
                queue.put_nowait(change)
            except asyncio.QueueFull:  # a stalled page: drop it, it reconnects and reloads
                self._queues.discard(queue)

    @contextlib.contextmanager
    def subscribe(self) -> Any:
        queue: asyncio.Queue[Change | None] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)

    def close(self) -> None:
        """End every stream (shutdown)."""
        for queue in list(self._queues):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        self._queues.clear()


def state_for(emulator: Emulator, user: str) -> dict[str, Any]:
    """Everything the page shows ``user``: people, their channels, messages, views."""
    channels = [
        c
        for c in emulator.channels.values()
        if (c["is_im"] and c.get("user") == user)
        or (not c["is_im"] and (not c["is_private"] or user in c["members"]))
    ]
    people = [u for u in emulator.users.values() if not u["is_bot"] and not u["deleted"]]
    return {
        "team": {"id": emulator.team_id, "name": emulator.team_name},
        "bot": {"id": emulator.bot_user_id, "name": "Switchboard"},
        "me": user,
        "users": list(emulator.users.values()),
        "people": [u["id"] for u in people],
        "usergroups": list(emulator.usergroups.values()),
        "channels": [dict(c) for c in channels],
        "messages": {c["id"]: emulator.messages.get(c["id"], []) for c in channels},
        "ephemeral": emulator.visible_ephemeral(user),
        "home": emulator.home_view(user),
        "modal": emulator.open_modal(user),
        "assistant": [
            {"channel": c, "thread_ts": t, **s}
            for (c, t), s in emulator.assistant_threads.items()
            if emulator.channels.get(c, {}).get("user") == user
        ],
    }


def routes(
    *,
    emulator: Emulator,
    actions: Actions,
    hub: Hub,
    access: Access,
    skills: Callable[[], SkillsOverview],
) -> list[BaseRoute]:
    """The page, its JSON API and its event stream (each behind ``access``)."""

    def person(body: dict[str, Any]) -> str:
        user = str(body.get("user") or "")
        found = emulator.users.get(user)
        if found is None or found["is_bot"]:
            raise ActionError("pick a person first")
        return user

    def handler(
        act: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not access.allows(request):
                return access.denied()
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if content_type.lower() != "application/json":
                return JSONResponse(
                    {"error": "expected Content-Type: application/json"}, status_code=415
                )
            try:
                body = await request.json()
            except ValueError:
                return JSONResponse({"error": "expected a JSON body"}, status_code=400)
            if not isinstance(body, dict):
                return JSONResponse({"error": "expected a JSON object"}, status_code=400)
            try:
                return JSONResponse(await act(body))
            except ActionError as exc:
                return JSONResponse({"error": exc.problem}, status_code=400)

        return endpoint

    async def say(body: dict[str, Any]) -> dict[str, Any]:
        user, text = person(body), str(body.get("text") or "")
        channel = str(body.get("channel") or "")
        if text.lstrip().startswith("/"):
            ack = await actions.command(user=user, channel=channel, text=text.strip())
            return {"command": True, "status": ack.status}
        thread_ts = str(body["thread_ts"]) if body.get("thread_ts") else None
        message = await actions.say(user=user, channel=channel, text=text, thread_ts=thread_ts)
        return {"ts": message["ts"]}

    async def click(body: dict[str, Any]) -> dict[str, Any]:
        state = body.get("state") if isinstance(body.get("state"), dict) else None
        ack = await actions.click(
            user=person(body),
            action_id=str(body.get("action_id") or ""),
            block_id=str(body["block_id"]) if body.get("block_id") else None,
            channel=str(body["channel"]) if body.get("channel") else None,
            message_ts=str(body["message_ts"]) if body.get("message_ts") else None,
            view_id=str(body["view_id"]) if body.get("view_id") else None,
            selected=str(body["selected"]) if body.get("selected") is not None else None,
            state=state,
        )
        return {"status": ack.status}

    async def submit(body: dict[str, Any]) -> dict[str, Any]:
        values = body.get("values") if isinstance(body.get("values"), dict) else {}
        return await actions.submit(
            user=person(body), view_id=str(body.get("view_id") or ""), values=values or {}
        )

    async def close(body: dict[str, Any]) -> dict[str, Any]:
        actions.close(user=person(body))
        return {}

    async def home(body: dict[str, Any]) -> dict[str, Any]:
        ack = await actions.open_home(user=person(body))
        return {"status": ack.status}

    async def assistant(body: dict[str, Any]) -> dict[str, Any]:
        context = str(body["context_channel"]) if body.get("context_channel") else None
        thread_ts = await actions.start_assistant(user=person(body), context_channel=context)
        return {"thread_ts": thread_ts, "channel": emulator.dm_of(person(body))}

    async def state(request: Request) -> Response:
        if not access.allows(request):
            return access.denied()
        user = request.query_params.get("user") or ""
        if user not in emulator.users or emulator.users[user]["is_bot"]:
            people = [u for u, v in emulator.users.items() if not v["is_bot"]]
            if not people:
                return JSONResponse({"error": "the workspace has nobody in it"}, status_code=404)
            user = people[0]
        return JSONResponse(state_for(emulator, user))

    async def events(request: Request) -> Response:
        if not access.allows(request):
            return access.denied()

        async def stream() -> AsyncIterator[str]:
            with hub.subscribe() as queue:
                yield "retry: 1000\n\n"
                while True:
                    try:
                        change = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if change is None:
                        return
                    yield f"data: {json.dumps(asdict(change))}\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def skills_state(request: Request) -> Response:
        if not access.allows(request):
            return access.denied()
        return JSONResponse(skills().to_json(), headers={"Cache-Control": "no-store"})

    async def page(request: Request) -> Response:
        return _page(request, "index.html")

    async def skills_page(request: Request) -> Response:
        return _page(request, "skills.html")

    def _page(request: Request, name: str) -> Response:
        offered = request.query_params.get("token")
        if offered is not None:
            # Trade the token in the printed URL for a cookie, and take it out of the
            # address bar (and the history) with a redirect.
            if not hmac.compare_digest(offered.encode(), access.token.encode()):
                return PlainTextResponse(
                    "This link is for another run of the sandbox: open the URL that "
                    "`switchboard sandbox` printed this time.\n",
                    status_code=401,
                )
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            redirect = RedirectResponse(target, status_code=303)
            redirect.set_cookie(
                access.cookie, access.token, httponly=True, samesite="strict", path="/"
            )
            return redirect
        if not access.allows(request):
            return PlainTextResponse(
                "Open the URL that `switchboard sandbox` printed: it carries this run's "
                "token (…/?token=…).\n",
                status_code=401,
            )
        return FileResponse(
            STATIC / name,
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

    async def favicon(_: Request) -> Response:
        return Response(status_code=204)

    return [
        Route("/", page, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        Route("/skills", skills_page, methods=["GET"]),
        Route("/sandbox/skills", skills_state, methods=["GET"]),
        Route("/sandbox/state", state, methods=["GET"]),
        Route("/sandbox/events", events, methods=["GET"]),
        Route("/sandbox/say", handler(say), methods=["POST"]),
        Route("/sandbox/click", handler(click), methods=["POST"]),
        Route("/sandbox/submit", handler(submit), methods=["POST"]),
        Route("/sandbox/close", handler(close), methods=["POST"]),
        Route("/sandbox/home", handler(home), methods=["POST"]),
        Route("/sandbox/assistant", handler(assistant), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
