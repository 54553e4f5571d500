"""A local stand-in for the LangSmith API that records every payload the client sends.

It answers ``GET /info`` (the client asks what the server supports) with an empty
capability set, so the client falls back to plain JSON batches (``POST /runs/batch``), and
accepts every run-ingestion route (``/runs``, ``/runs/batch``, ``/runs/multipart``,
``PATCH /runs/{id}``). ``bodies`` keeps each request body decoded (gzip/zstd undone), so a
test can search everything that would have left the process.
"""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeLangSmith"]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read(self) -> bytes:
        body = self.rfile.read(int(self.headers.get("content-length", "0") or 0))
        encoding = self.headers.get("content-encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "zstd":
            import zstandard

            body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        return body

    def _answer(self, payload: Any, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/info"):
            self._answer({"version": "0.0.0-fake", "batch_ingest_config": {}})
        else:
            self._answer({}, 404)

    def do_POST(self) -> None:
        self.server.fake._record("POST", self.path, self._read())
        self._answer({})

    def do_PATCH(self) -> None:
        self.server.fake._record("PATCH", self.path, self._read())
        self._answer({})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeLangSmith) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class FakeLangSmith:
    """The fake API; ``url`` is the value for ``LANGSMITH_ENDPOINT``."""

    def __init__(self) -> None:
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str, bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _record(self, method: str, path: str, body: bytes) -> None:
        with self._lock:
            self.requests.append((method, path, body))

    @property
    def bodies(self) -> bytes:
        with self._lock:
            return b"\n".join(body for _, _, body in self.requests)

    def __enter__(self) -> FakeLangSmith:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
