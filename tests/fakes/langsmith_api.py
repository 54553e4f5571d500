"""A local stand-in for the LangSmith API that records every payload the client sends.

It answers ``GET /info`` (the client asks what the server supports) with an empty
capability set, so the client falls back to plain JSON batches (``POST /runs/batch``), and
accepts every run-ingestion route (``/runs``, ``/runs/batch``, ``/runs/multipart``,
``PATCH /runs/{id}``). ``bodies`` keeps each request body decoded (gzip/zstd undone), so a
test can search everything that would have left the process.
"""

from __future__ import annotations

import gzip
import threading
from typing import Any

from switchboard.local_server import LocalHandler, LocalServer

__all__ = ["FakeLangSmith"]


class _Handler(LocalHandler["FakeLangSmith"]):
    def _read(self) -> bytes:
        body = self.read_body()
        encoding = self.headers.get("content-encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "zstd":
            import zstandard

            body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        return body

    def _answer(self, payload: Any, status: int = 200) -> None:
        self.send_json(status, payload)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/info"):
            self._answer({"version": "0.0.0-fake", "batch_ingest_config": {}})
        else:
            self._answer({}, 404)

    def do_POST(self) -> None:
        self.fake._record("POST", self.path, self._read())
        self._answer({})

    def do_PATCH(self) -> None:
        self.fake._record("PATCH", self.path, self._read())
        self._answer({})


class FakeLangSmith(LocalServer):
    """The fake API; ``url`` is the value for ``LANGSMITH_ENDPOINT``."""

    handler = _Handler
    thread_name = "fake-langsmith"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str, bytes]] = []

    def _record(self, method: str, path: str, body: bytes) -> None:
        with self._lock:
            self.requests.append((method, path, body))

    @property
    def bodies(self) -> bytes:
        with self._lock:
            return b"\n".join(body for _, _, body in self.requests)
