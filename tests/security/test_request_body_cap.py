"""Finding 6 (request bodies): an unsigned POST must not be read whole before it is judged.

The attack: ``POST /slack/events`` with a 400 MiB body and no signature. Before the fix the
endpoint read the whole body, then checked its size and signature (980 MiB RSS). Now the
declared ``Content-Length`` is judged before a byte is read (413), a chunked body is read
only up to the cap, and a body with neither is a 411.

Two measurements: the ASGI app in-process (tracemalloc peak, and how many body chunks the
app pulled), and a real ``switchboard serve`` process (its RSS before and after).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.http import MAX_BODY_BYTES
from tests.bot.conftest import BotEnv, sign
from tests.processes import serve, stop, wait_healthy

MIB = 1024 * 1024
ATTACK_BYTES = 400 * MIB
CHUNK = b"x" * MIB


class _Body:
    """An ASGI ``receive`` that hands out ``total`` bytes in 1 MiB chunks, lazily, and
    counts how many chunks the app asked for."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0
        self.pulled = 0

    async def __call__(self) -> dict[str, Any]:
        if self.sent >= self.total:
            await asyncio.sleep(3600)  # the app waits for a disconnect that never comes
        size = min(len(CHUNK), self.total - self.sent)
        self.sent += size
        self.pulled += 1
        return {
            "type": "http.request",
            "body": CHUNK[:size],
            "more_body": self.sent < self.total,
        }


async def _call(app: Any, headers: list[tuple[bytes, bytes]], body: _Body) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/slack/events",
        "raw_path": b"/slack/events",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"switchboard"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 3000),
    }
    status = 0
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await asyncio.wait_for(app(scope, body, send), timeout=30)
    return status, b"".join(chunks)


def _asgi_app(env: BotEnv) -> Any:
    transport = env.http._transport
    assert isinstance(transport, httpx.ASGITransport)
    return transport.app


async def _measured(app: Any, headers: list[tuple[bytes, bytes]], body: _Body) -> tuple[int, int]:
    """(status, peak bytes traced while the request ran)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline, _ = tracemalloc.get_traced_memory()
        status, _ = await _call(app, headers, body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return status, peak - baseline


async def test_a_400_mib_unsigned_post_is_refused_unread(slack_bot: BotEnv) -> None:
    app = _asgi_app(slack_bot)
    body = _Body(ATTACK_BYTES)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(ATTACK_BYTES).encode()),
    ]
    status, grown = await _measured(app, headers, body)
    assert status == 413
    assert body.pulled == 0, f"the app read {body.pulled} MiB of an oversized body"
    assert grown < 4 * MIB, f"memory grew by {grown / MIB:.1f} MiB"
    # Nothing ran for it and nothing was posted.
    assert slack_bot.slack.calls("chat.postMessage") == []


async def test_a_chunked_body_is_read_only_up_to_the_cap(slack_bot: BotEnv) -> None:
    app = _asgi_app(slack_bot)
    body = _Body(ATTACK_BYTES)
    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    status, grown = await _measured(app, headers, body)
    assert status == 413
    cap_chunks = MAX_BODY_BYTES // MIB + 1
    assert body.pulled <= cap_chunks, f"read {body.pulled} MiB, the cap is {cap_chunks}"
    assert grown < 4 * MIB, f"memory grew by {grown / MIB:.1f} MiB"


async def test_a_body_without_length_or_chunking_is_411(slack_bot: BotEnv) -> None:
    status, _ = await _call(
        _asgi_app(slack_bot), [(b"content-type", b"application/json")], _Body(0)
    )
    assert status == 411


async def test_malformed_content_length_is_400(slack_bot: BotEnv) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"12, 12")]
    status, _ = await _call(_asgi_app(slack_bot), headers, _Body(12))
    assert status == 400


async def test_positive_control_a_signed_mention_is_answered(slack_bot: BotEnv) -> None:
    response, ts = await slack_bot.mention("ask hello")
    assert response.status_code == 200
    await slack_bot.idle()
    assert slack_bot.replies("C0GENERAL", ts), "a normal signed request must still work"
    # And a chunked body under the cap is accepted like any other.
    payload = json.dumps({"type": "url_verification", "challenge": "c-123"})

    async def chunks() -> Any:
        yield payload.encode()

    answer = await slack_bot.http.post(
        "/slack/events",
        content=chunks(),
        headers={"content-type": "application/json", **sign(payload)},
    )
    assert answer.status_code == 200 and "c-123" in answer.text


# -- a real process -----------------------------------------------------------------------


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM): a body read whole and freed
    again still shows here, where the current RSS would already be back down."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _send_unsigned(port: int, total: int) -> tuple[int, int]:
    """POST ``total`` bytes without a signature; (status, bytes the server let us send)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(total).encode() + b"\r\n\r\n"
        )
        sock.settimeout(5)
        try:
            while sent < total:
                sent += sock.send(CHUNK[: min(len(CHUNK), total - sent)])
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the server answered and stopped reading
        sock.settimeout(30)
        data = b""
        try:
            while b"\r\n" not in data:
                part = sock.recv(4096)
                if not part:
                    break
                data += part
        except (ConnectionResetError, TimeoutError):
            pass
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, sent


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_switchboard_serve_rss_stays_flat_under_a_400_mib_post(tmp_path: Path) -> None:
    proc, port = serve(tmp_path)
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}/healthz")
        before = _peak_rss(proc.pid)
        status, sent = _send_unsigned(port, ATTACK_BYTES)
        time.sleep(0.5)
        after = _peak_rss(proc.pid)
        grown = after - before
        print(
            f"\nserve peak RSS before {before / MIB:.1f} MiB, after a 400 MiB unsigned POST "
            f"{after / MIB:.1f} MiB (+{grown / MIB:.1f} MiB); status {status}; "
            f"the client managed to send {sent / MIB:.1f} MiB"
        )
        assert status == 413
        assert grown < 10 * MIB, f"peak RSS grew by {grown / MIB:.1f} MiB"
        # Positive control: the same process still answers a signed request.
        payload = json.dumps({"type": "url_verification", "challenge": "still-here"})
        ok = httpx.post(
            f"http://127.0.0.1:{port}/slack/events",
            content=payload,
            headers={"content-type": "application/json", **sign(payload)},
            timeout=10,
        )
        assert ok.status_code == 200 and "still-here" in ok.text
    finally:
        stop(proc)
