"""The page: static files, a small JSON API for it, and live updates over Server-Sent Events.

``GET /`` is the page; ``GET /sandbox/state?user=U…`` what one person sees; ``POST
/sandbox/say|click|submit|close|home|assistant`` what they do; ``GET /sandbox/events`` the
stream of :class:`~sandbox.emulator.Change` values (the page drops what is meant for
somebody else). Nothing here renders the bot's text: the page does, without ``innerHTML``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from sandbox.actions import ActionError, Actions
from sandbox.emulator import Change, Emulator

__all__ = ["Hub", "routes"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
HEARTBEAT_SECONDS = 15.0
QUEUE_SIZE = 1000


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


def routes(*, emulator: Emulator, actions: Actions, hub: Hub) -> list[BaseRoute]:
    """The page, its JSON API and its event stream."""

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
        user = request.query_params.get("user") or ""
        if user not in emulator.users or emulator.users[user]["is_bot"]:
            people = [u for u, v in emulator.users.items() if not v["is_bot"]]
            if not people:
                return JSONResponse({"error": "the workspace has nobody in it"}, status_code=404)
            user = people[0]
        return JSONResponse(state_for(emulator, user))

    async def events(request: Request) -> Response:
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

    async def page(_: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def favicon(_: Request) -> Response:
        return Response(status_code=204)

    return [
        Route("/", page, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
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
