"""The base of the local HTTP servers that stand in for outside services in tests and benchmarks.

A fake (the Slack Web API, an OpenAI-compatible model, an HTTP tool's target, LangSmith,
an OTLP collector) is a :class:`LocalServer` subclass naming its :class:`LocalHandler`:
a threaded ``http.server`` on 127.0.0.1 and an ephemeral port, in daemon threads so a
test's event loop stays free, started and stopped as a context manager::

    class FakeThing(LocalServer):
        handler = _ThingHandler

    with FakeThing() as thing:
        client.get(thing.url + "/ping")

The handler (``LocalHandler["FakeThing"]``) reaches its fake as ``self.fake``. It lives here, beside
:mod:`switchboard.testing`, because bench/ uses fakes too and never imports tests/.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar, cast

__all__ = ["LocalHandler", "LocalServer"]


FakeT = TypeVar("FakeT", bound="LocalServer")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default listen backlog is 5: a burst of calls (HTTP/1.0, a connection
    # each, e.g. 300 model calls at once) overflowed it, the kernel reset or dropped the
    # connections and clients retried with backoff - the fake, not the code under test,
    # set the pace.
    request_queue_size = 1024

    def __init__(self, fake: LocalServer, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.fake = fake


class LocalHandler(BaseHTTPRequestHandler, Generic[FakeT]):
    """A request handler that stays quiet and speaks JSON; ``fake`` is its server's owner
    (``class _Handler(LocalHandler["FakeThing"])``)."""

    server: _HTTPServer

    @property
    def fake(self) -> FakeT:
        """The :class:`LocalServer` this request came to."""
        return cast(FakeT, self.server.fake)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read what the fake recorded instead."""

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(
        self,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        *,
        content_type: str = "application/json",
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class LocalServer:
    """A fake service on a local port. Use as a context manager, or ``start``/``stop``.

    ``url`` is ``http://127.0.0.1:PORT`` (subclasses add their API's path, e.g.
    ``base_url``); ``stopping`` is set when the server stops, so a handler that waits
    (a scripted delay) can give up at once.
    """

    handler: ClassVar[type[BaseHTTPRequestHandler]]
    #: What the thread is called (seen in thread dumps of a hung test).
    thread_name: ClassVar[str] = "local-server"

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self.stopping.clear()
        self._httpd = _HTTPServer(self, self.handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
