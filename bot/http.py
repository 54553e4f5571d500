"""HTTP mode: ``POST /slack/events``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``.

The endpoint verifies the signature (401 for a bad one or a timestamp older than five
minutes, before anything is parsed or run), rejects malformed bodies with a 4xx and a log
line, then dispatches to Bolt. Raw bodies are never logged. An event type no listener
handles is still acked 200, so Slack does not retry it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs

from slack_bolt.request.async_request import AsyncBoltRequest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot.app import Bot
from bot.listeners.hygiene import request_type
from bot.metrics import CONTENT_TYPE_LATEST
from storage.redis import ping

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000
MAX_CLOCK_SKEW = 5 * 60


class BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)


def parse_body(body: bytes, content_type: str) -> dict[str, Any]:
    """The payload of a Slack request, or :class:`BadRequest` saying what is wrong."""
    try:
        raw = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(400, "body is not UTF-8") from None
    if content_type.startswith("application/json"):
        try:
            payload = json.loads(raw)
        except ValueError:
            raise BadRequest(400, "malformed JSON body") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            raise BadRequest(400, "JSON body without a type")
        if payload["type"] == "event_callback" and not isinstance(payload.get("event"), dict):
            raise BadRequest(400, "event_callback without an event")
        if payload["type"] == "url_verification" and not payload.get("challenge"):
            raise BadRequest(400, "url_verification without a challenge")
        return payload
    if content_type.startswith("application/x-www-form-urlencoded"):
        form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        if "payload" in form:
            try:
                payload = json.loads(form["payload"])
            except ValueError:
                raise BadRequest(400, "malformed payload= form field") from None
            if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
                raise BadRequest(400, "interactivity payload without a type")
            return payload
        if "command" in form:
            for field in ("user_id", "channel_id", "team_id"):
                if not form.get(field):
                    raise BadRequest(400, f"slash command without {field}")
            return form
        raise BadRequest(400, "form body is neither a command nor an interactivity payload")
    raise BadRequest(415, f"unsupported content type {content_type.split(';')[0] or 'none'}")


def valid_signature(
    secret: str, body: bytes, timestamp: str, signature: str, *, now: float
) -> bool:
    """Slack's v0 request signature over the raw bytes, with a five-minute window."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > MAX_CLOCK_SKEW:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def ops_routes(bot: Bot, services: Any) -> list[Route]:
    """``/healthz``, ``/readyz`` and ``/metrics`` (served in HTTP and in Socket Mode)."""
    metrics = bot.metrics

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        checks: dict[str, str] = {}
        try:
            async with services.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["sql"] = "ok"
        except Exception as exc:  # readiness reports, it never raises
            checks["sql"] = f"unreachable ({type(exc).__name__})"
        checks["redis"] = "ok" if await ping(services.redis) else "unreachable"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", **checks},
            status_code=200 if ready else 503,
        )

    async def metrics_endpoint(_: Request) -> Response:
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]


def create_ops_app(bot: Bot, *, services: Any) -> Starlette:
    """Health and metrics only: the HTTP side of a Socket Mode process."""
    return Starlette(routes=ops_routes(bot, services))


def create_http_app(
    bot: Bot,
    *,
    signing_secret: str,
    services: Any,
    lifespan: Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]] | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The ASGI app for ``switchboard serve`` (and the sandbox)."""

    metrics = bot.metrics

    async def slack_events(request: Request) -> Response:
        started = time.perf_counter()
        kind = "unknown"
        try:
            body = await request.body()
            if len(body) > MAX_BODY_BYTES:
                raise BadRequest(413, "body too large")
            timestamp = request.headers.get("x-slack-request-timestamp", "")
            signature = request.headers.get("x-slack-signature", "")
            if not valid_signature(signing_secret, body, timestamp, signature, now=clock()):
                log.warning(
                    "rejected Slack request: bad signature or stale timestamp (retry=%s)",
                    request.headers.get("x-slack-retry-num", "0"),
                )
                metrics.requests.labels(type="unknown", outcome="unauthorized").inc()
                return JSONResponse({"error": "invalid signature"}, status_code=401)
            payload = parse_body(body, request.headers.get("content-type", ""))
            kind = request_type(payload)
            bolt_request = AsyncBoltRequest(
                body=body.decode("utf-8"),
                query=dict(request.query_params),
                headers=dict(request.headers),
            )
            response = await bot.app.async_dispatch(bolt_request)
            status = response.status
            if status == 404 and payload.get("type") == "event_callback":
                status, content = 200, ""  # an event no listener wants: ack it anyway
            else:
                content = response.body
            outcome = "ok" if status < 400 else f"http_{status}"
            metrics.requests.labels(type=kind, outcome=outcome).inc()
            headers = response.first_headers_without_set_cookie()
            headers.pop("content-length", None)
            return Response(content=content, status_code=status, headers=headers)
        except BadRequest as exc:
            log.warning("rejected Slack request (%s): %s", kind, exc.reason)
            metrics.requests.labels(type=kind, outcome=f"http_{exc.status}").inc()
            return JSONResponse({"error": exc.reason}, status_code=exc.status)
        finally:
            metrics.ack_latency.labels(type=kind).observe(time.perf_counter() - started)

    @contextlib.asynccontextmanager
    async def _lifespan(app: Starlette) -> AsyncIterator[None]:
        if lifespan is not None:
            async with lifespan(app):
                yield
        else:
            yield
        await bot.worker.drain()

    return Starlette(
        routes=[
            Route("/slack/events", slack_events, methods=["POST"]),
            *ops_routes(bot, services),
        ],
        lifespan=_lifespan,
    )
