"""`HttpTarget`: a local HTTP server that HTTP-tool tests call instead of a real API.

A :class:`~switchboard.local_server.LocalServer` (127.0.0.1, an ephemeral port). Tests
script routes (status, body, headers, a delay, or a large streamed body) and read back
every request received::

    with HttpTarget() as target:
        target.route("GET", "/orders/42", json={"id": "42", "status": "paid"})
        ...
        assert target.requests[0].headers["authorization"] == "Bearer secret"

Paths are matched as sent (still percent-encoded), so tests can check URL encoding.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from switchboard.local_server import LocalHandler, LocalServer

__all__ = ["HttpTarget", "RecordedRequest", "Route"]

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it; header names are lower-case."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Route:
    """A scripted answer. ``size`` streams that many bytes of ``x`` instead of ``body``."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    size: int | None = None


class _Handler(LocalHandler["HttpTarget"]):
    def _handle(self) -> None:
        target = self.fake
        parts = urlsplit(self.path)
        body = self.read_body()
        target._record(
            RecordedRequest(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
        )
        route = target.routes.get((self.command, parts.path), Route(404, b'{"error":"not found"}'))
        if route.delay and target.stopping.wait(route.delay):
            return
        try:
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            size = route.size if route.size is not None else len(route.body)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if self.command == "HEAD":
                return
            if route.size is None:
                self.wfile.write(route.body)
                return
            chunk = b"x" * _CHUNK
            sent = 0
            while sent < route.size:
                piece = chunk[: min(_CHUNK, route.size - sent)]
                self.wfile.write(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading, which is what a size cap does

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


class HttpTarget(LocalServer):
    """The server; use as a context manager, or call `start` and `stop`."""

    handler = _Handler
    thread_name = "http-target"

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[tuple[str, str], Route] = {}
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return self.url

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def route(
        self,
        method: str,
        path: str,
        *,
        status: int = 200,
        json: Any = None,
        text: str | None = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        size: int | None = None,
    ) -> None:
        """Answer ``method path`` (percent-encoded as sent) with the given response."""
        all_headers = dict(headers or {})
        body = b""
        if json is not None:
            body = _json_bytes(json)
            all_headers.setdefault("Content-Type", "application/json")
        elif text is not None:
            body = text.encode()
            all_headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        self.routes[(method.upper(), path)] = Route(status, body, all_headers, delay, size)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()
