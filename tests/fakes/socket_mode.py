"""A local fake of Slack's Socket Mode: ``apps.connections.open`` plus the WebSocket.

Slack's Socket Mode works in two steps (https://docs.slack.dev/apis/events-api/using-socket-mode):
the app calls ``apps.connections.open`` with its app-level token (``xapp-…``) and gets a
one-off ``wss://…/link/?ticket=…`` URL; it connects there, Slack greets it with a ``hello``
message, then pushes envelopes that the app must ack by sending back their ``envelope_id``::

    {"envelope_id": "…", "type": "events_api", "payload": {…event_callback…},
     "accepts_response_payload": false, "retry_attempt": 0, "retry_reason": ""}

:class:`FakeSocketMode` plays both parts on ``127.0.0.1`` with aiohttp, on the test's own
event loop. Every other Web API method is forwarded to an ``upstream`` server (the fake Web
API of :mod:`tests.fakes.slack_api`), so a bot whose ``AsyncWebClient`` has
``base_url=fake.api_url`` reaches both through one URL and nothing in slack_sdk is patched::

    async with FakeSocketMode(upstream=slack_api.base_url) as slack_socket:
        client = create_web_client(token=slack_api.token, base_url=slack_socket.api_url)
        ...  # start the Socket Mode client with app_token=slack_socket.app_token
        link = await slack_socket.wait_for_connection()
        envelope_id = await link.send_event({"type": "app_mention", ...})
        await link.wait_for_ack(envelope_id)

A connection can be :meth:`~SocketConnection.mute`\\ d: it stays open but sends nothing any
more, not even pongs — the half-dead connection a silence watchdog has to notice.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import WSMsgType, web

__all__ = ["FakeSocketMode", "SocketConnection"]

# Headers that must not be copied from one HTTP hop to the next.
_HOP_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "content-encoding",
        "host",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
    }
)


async def wait_until(
    predicate: Callable[[], bool], *, timeout: float = 5.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` (every 10 ms, yielding to the loop) until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        await asyncio.sleep(0.01)


class SocketConnection:
    """One WebSocket connection from the app, as the fake server sees it."""

    def __init__(self, ws: web.WebSocketResponse, *, number: int, ticket: str) -> None:
        self._ws = ws
        self.number = number  # 1 for the first connection of the server, 2 for the next…
        self.ticket = ticket  # the ticket of the URL it connected to
        self.received: list[dict[str, Any]] = []  # every JSON text frame from the app
        self.pings = 0  # WebSocket pings from the app
        self.muted = False
        self.closed = False

    @property
    def acks(self) -> dict[str, dict[str, Any]]:
        """Acks received so far, by envelope id."""
        return {str(m["envelope_id"]): m for m in self.received if "envelope_id" in m}

    def mute(self) -> None:
        """Stop sending anything (events, pongs) while keeping the socket open."""
        self.muted = True

    async def send(self, message: dict[str, Any]) -> None:
        """Send one JSON text frame (refused on a muted connection: a test mistake)."""
        if self.muted:
            raise RuntimeError(f"connection {self.number} is muted")
        await self._ws.send_str(json.dumps(message))

    async def send_event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        team_id: str = "T0FAKE",
        api_app_id: str = "A0FAKE",
        retry_attempt: int = 0,
        retry_reason: str = "",
    ) -> str:
        """Push an Events API envelope carrying ``event``; returns its ``envelope_id``."""
        envelope_id = str(uuid.uuid4())
        payload = {
            "token": "legacy",
            "team_id": team_id,
            "api_app_id": api_app_id,
            "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "event": {"event_ts": event.get("ts", "1.0"), **event},
        }
        await self.send(
            {
                "envelope_id": envelope_id,
                "type": "events_api",
                "payload": payload,
                "accepts_response_payload": False,
                "retry_attempt": retry_attempt,
                "retry_reason": retry_reason,
            }
        )
        return envelope_id

    async def wait_for_ack(self, envelope_id: str, *, timeout: float = 5.0) -> dict[str, Any]:
        """The app's ack of ``envelope_id``, once it arrives."""
        await wait_until(
            lambda: envelope_id in self.acks, timeout=timeout, what=f"ack of {envelope_id}"
        )
        return self.acks[envelope_id]

    async def _serve(self) -> None:
        """Read frames until the app goes away: record JSON, answer pings unless muted."""
        try:
            async for message in self._ws:
                if message.type == WSMsgType.TEXT:
                    try:
                        data = json.loads(message.data)
                    except json.JSONDecodeError:
                        data = {"raw": message.data}
                    self.received.append(data if isinstance(data, dict) else {"raw": data})
                elif message.type == WSMsgType.PING:
                    self.pings += 1
                    if not self.muted:
                        await self._ws.pong(message.data)
        finally:
            self.closed = True

    async def close(self) -> None:
        await self._ws.close()


class FakeSocketMode:
    """``apps.connections.open`` and the Socket Mode WebSocket on an ephemeral local port.

    ``app_token`` is the only app-level token accepted; ``upstream`` (a Web API base URL)
    receives every other ``/api/<method>`` call unchanged. ``opens`` counts successful
    ``apps.connections.open`` calls and ``connections`` lists every WebSocket, oldest first.
    """

    def __init__(
        self,
        *,
        app_token: str = "xapp-1-A0FAKE-1-fake",
        app_id: str = "A0FAKE",
        upstream: str | None = None,
    ) -> None:
        self.app_token = app_token
        self.app_id = app_id
        self.upstream = upstream.rstrip("/") + "/" if upstream else None
        self.opens = 0
        self.connections: list[SocketConnection] = []
        self._tickets: set[str] = set()
        self._counter = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> Self:
        app = web.Application()
        app.router.add_post("/api/apps.connections.open", self._connections_open)
        app.router.add_get("/link/", self._link)
        app.router.add_route("*", "/api/{method}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))  # an ephemeral port, known before serving
        self._port = int(listener.getsockname()[1])
        await web.SockSite(self._runner, listener).start()
        self._session = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        for connection in self.connections:
            if not connection.closed:
                await connection.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def api_url(self) -> str:
        """The Web API base URL to give the app's ``AsyncWebClient``."""
        if not self._port:
            raise RuntimeError("the fake Socket Mode server is not running")
        return f"http://127.0.0.1:{self._port}/api/"

    # -- what tests look at ------------------------------------------------------------------

    @property
    def current(self) -> SocketConnection:
        """The newest connection still open."""
        live = [c for c in self.connections if not c.closed]
        if not live:
            raise AssertionError("no open Socket Mode connection")
        return live[-1]

    async def wait_for_connection(
        self, number: int = 1, *, timeout: float = 5.0
    ) -> SocketConnection:
        """Wait until the ``number``-th WebSocket connection arrived; return it."""
        await wait_until(
            lambda: len(self.connections) >= number,
            timeout=timeout,
            what=f"Socket Mode connection #{number} (have {len(self.connections)})",
        )
        return self.connections[number - 1]

    # -- handlers ---------------------------------------------------------------------------

    async def _connections_open(self, request: web.Request) -> web.Response:
        token = await _token(request)
        if not token:
            return web.json_response({"ok": False, "error": "not_authed"})
        if not token.startswith("xapp-"):
            return web.json_response({"ok": False, "error": "not_allowed_token_type"})
        if token != self.app_token:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        self.opens += 1
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        url = f"ws://127.0.0.1:{self._port}/link/?ticket={ticket}&app_id={self.app_id}"
        return web.json_response({"ok": True, "url": url})

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:  # tickets are single use, as with Slack
            return web.Response(status=401, text="invalid ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=False)  # pings are answered (or not) by hand
        await ws.prepare(request)
        connection = SocketConnection(ws, number=next(self._counter), ticket=ticket)
        self.connections.append(connection)
        await connection.send(
            {
                "type": "hello",
                "num_connections": sum(1 for c in self.connections if not c.closed),
                "debug_info": {"host": "fake-applink", "approximate_connection_time": 18060},
                "connection_info": {"app_id": self.app_id},
            }
        )
        await connection._serve()
        return ws

    async def _forward(self, request: web.Request) -> web.Response:
        """Pass a Web API call to ``upstream`` and its answer back, headers included."""
        if self.upstream is None or self._session is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        async with self._session.request(
            request.method,
            self.upstream + request.match_info["method"],
            params=request.query,
            data=await request.read(),
            headers=headers,
        ) as answer:
            body = await answer.read()
            back = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_HEADERS}
            return web.Response(status=answer.status, body=body, headers=back)


async def _token(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return auth.removeprefix("Bearer ").strip()
    form = await request.post()
    value = form.get("token")
    return value if isinstance(value, str) else ""
