"""HTTP mode: ``POST /slack/events``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``.

The endpoint works in a fixed order, each step bounded before the next one runs:

1. ``Content-Length`` is checked before a byte of the body is read: over
   :data:`MAX_BODY_BYTES` is a 413, a malformed value a 400, and a body with neither a
   length nor chunked transfer encoding a 411. A chunked body is streamed with the same cap
   (413 as soon as it passes it), so an unsigned 400 MiB POST costs at most one chunk.
2. The signature is verified over the raw bytes (401 for a bad one or a timestamp older
   than five minutes) before anything is parsed or run.
3. The body is parsed with a nesting limit (deeply nested JSON is a 400, never a
   ``RecursionError``), and malformed bodies get a 4xx and a log line.
4. Bolt dispatches to the listeners.

Raw bodies are never logged. An event type no listener handles is still acked 200, so
Slack does not retry it. With ``METRICS_PORT`` set, ``/metrics`` is left off this app and
served by :func:`create_metrics_app` on its own (internal) port instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.payload_utils import is_assistant_event
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot.app import Bot
from bot.listeners.hygiene import request_type
from bot.metrics import CONTENT_TYPE_LATEST, Metrics
from skills import tracing
from storage.redis import ping
from storage.sql import ping as sql_ping

log = logging.getLogger(f"switchboard.{__name__}")

MAX_BODY_BYTES = 1_000_000
MAX_CLOCK_SKEW = 5 * 60
MAX_JSON_DEPTH = 64
"""Deepest nesting a payload may have; Slack's own (views with rich text) stay under 20."""


class BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)


async def read_body(request: Request, *, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, at most ``limit`` bytes, or :class:`BadRequest` (411/413/400).

    The declared length is judged before anything is read; a chunked body is read chunk by
    chunk and abandoned as soon as it passes ``limit``, so memory stays bounded by the cap
    whatever the client sends.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BadRequest(400, "malformed Content-Length")
        if int(declared) > limit:
            raise BadRequest(413, f"body too large ({declared} bytes, limit {limit})")
    elif "chunked" not in request.headers.get("transfer-encoding", "").lower():
        raise BadRequest(411, "Content-Length required")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(413, f"body too large (over {limit} bytes)")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadRequest(400, "client disconnected before the body was complete") from None
    return b"".join(chunks)


def _loads(raw: str, what: str) -> Any:
    """``json.loads`` whose failures, deep nesting included, are a 400."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise BadRequest(400, f"{what} is nested too deeply") from None
    except ValueError:
        raise BadRequest(400, f"malformed {what}") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise BadRequest(400, f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    """How deeply ``value`` nests (iterative: the check itself can never recurse too far)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


# The fields Bolt and the listeners read, and the types they may have (``None`` always
# means "absent"). Unknown fields pass; a known field of the wrong type is a 400 here rather
# than a TypeError deep in Bolt's context building or in a listener. ``"*"`` matches every
# key of a mapping; a one-element list is "a list of these".
# Slack sends user/channel/team/enterprise as an id or as an object with an id.
_ID = (str, {"id": str, "team_id": str, "enterprise_id": str, "name": str, "domain": str})
_STATE_VALUES = {"*": {"*": {"type": str, "value": str, "selected_option": dict}}}
_VIEW = {
    "id": str,
    "type": str,
    "callback_id": str,
    "private_metadata": str,
    "hash": str,
    "team_id": str,
    "app_installed_team_id": str,
    "state": {"values": _STATE_VALUES},
}
_MESSAGE = {"ts": str, "thread_ts": str, "text": str, "user": _ID, "blocks": list}
_EVENT = {
    "type": str,
    "subtype": str,
    "channel": _ID,
    "channel_type": str,
    "user": _ID,
    "bot_id": str,
    "team": _ID,
    "user_team": str,
    "text": str,
    "ts": str,
    "thread_ts": str,
    "event_ts": str,
    "tab": str,
    "message": _MESSAGE,
    "previous_message": _MESSAGE,
    "item": dict,
    "view": _VIEW,
    "assistant_thread": {"channel_id": str, "thread_ts": str, "user_id": str, "context": dict},
}
_SHAPE: dict[str, Any] = {
    "type": str,
    "token": str,
    "team_id": str,
    "enterprise_id": str,
    "api_app_id": str,
    "event_id": str,
    "is_enterprise_install": (bool, str),
    "is_ext_shared_channel": bool,
    "authorizations": [
        {"team_id": str, "user_id": str, "enterprise_id": str, "is_enterprise_install": bool}
    ],
    "enterprise": _ID,
    "team": _ID,
    "user": _ID,
    "channel": _ID,
    "event": _EVENT,
    "actions": [{"action_id": str, "block_id": str, "type": str, "value": str}],
    "view": _VIEW,
    "message": _MESSAGE,
    "container": dict,
    "state": {"values": _STATE_VALUES},
    "trigger_id": str,
    "response_url": str,
    "response_urls": [{"response_url": str}],
    "function_data": dict,
    "callback_id": str,
}


def _check_shape(value: Any, shape: Any, path: str) -> None:
    """Raise :class:`BadRequest` naming the first field of ``value`` that ``shape`` rejects."""
    if value is None:
        return
    if isinstance(shape, tuple) and any(isinstance(option, dict) for option in shape):
        objects = [option for option in shape if isinstance(option, dict)]
        if isinstance(value, dict):
            _check_shape(value, objects[0], path)
            return
        shape = tuple(option for option in shape if not isinstance(option, dict))
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            raise BadRequest(400, f"{path} is not an object")
        for key, item in value.items():
            sub = shape.get(key, shape.get("*"))
            if sub is not None:
                _check_shape(item, sub, f"{path}.{key}")
        return
    if isinstance(shape, list):
        if not isinstance(value, list):
            raise BadRequest(400, f"{path} is not a list")
        for index, item in enumerate(value):
            _check_shape(item, shape[0], f"{path}[{index}]")
        return
    if not isinstance(value, shape):
        raise BadRequest(400, f"{path} has the wrong type")


def _check_payload(payload: dict[str, Any], where: str) -> None:
    """The payload's shape (:data:`_SHAPE`), plus what Bolt indexes without looking: a key
    it tests with ``in`` (``actions``, ``view``, ``event``) may not be null, and the
    ``actions`` of a click may not be empty."""
    _check_shape(payload, _SHAPE, where)
    for key in ("actions", "view", "event"):
        if key in payload and payload[key] is None:
            raise BadRequest(400, f"{where}.{key} is null")
    if "actions" in payload and not payload["actions"]:
        raise BadRequest(400, f"{where}.actions is empty")
    for index, action in enumerate(payload.get("actions") or []):
        if not isinstance(action.get("action_id"), str):
            raise BadRequest(400, f"{where}.actions[{index}] without an action_id")
    kind = payload.get("type")
    event = payload.get("event")
    if isinstance(event, dict) and is_assistant_event(payload):
        # Bolt builds its Assistant helpers for these and needs the thread they are in.
        thread = event.get("assistant_thread")
        where_from = thread if isinstance(thread, dict) else event
        keys = ("channel_id", "thread_ts") if where_from is thread else ("channel", "thread_ts")
        if not all(isinstance(where_from.get(k), str) for k in keys):
            raise BadRequest(400, f"{where}.event is an Assistant event without its thread")
    if kind in {"view_submission", "view_closed"}:
        view = payload.get("view")
        if not isinstance(view, dict) or not all(
            isinstance(view.get(k), str) for k in ("type", "callback_id")
        ):
            raise BadRequest(400, f"{where}.view without a type and callback_id")
    if kind != "event_callback" and kind is not None:
        # Interactivity payloads carry these as objects, never as bare ids.
        for key in ("user", "channel", "team"):
            if payload.get(key) is not None and not isinstance(payload[key], dict):
                raise BadRequest(400, f"{where}.{key} is not an object")


def parse_body(body: bytes, content_type: str) -> dict[str, Any]:
    """The payload of a Slack request, or :class:`BadRequest` saying what is wrong."""
    try:
        raw = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(400, "body is not UTF-8") from None
    if content_type.startswith("application/json"):
        payload = _loads(raw, "JSON body")
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            raise BadRequest(400, "JSON body without a type")
        if payload["type"] == "event_callback" and not isinstance(payload.get("event"), dict):
            raise BadRequest(400, "event_callback without an event")
        if payload["type"] == "url_verification" and not payload.get("challenge"):
            raise BadRequest(400, "url_verification without a challenge")
        _check_payload(payload, "body")
        return payload
    if content_type.startswith("application/x-www-form-urlencoded"):
        form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        if "payload" in form:
            payload = _loads(form["payload"], "payload= form field")
            if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
                raise BadRequest(400, "interactivity payload without a type")
            _check_payload(payload, "payload")
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


#: One readiness check: "ok", or a short reason (never raises; :func:`health_routes` bounds
#: its time).
Check = Callable[[], Awaitable[str]]
#: What ``/readyz`` adds to its body beside the checks (the scheduler's leader state…).
Details = Callable[[], Mapping[str, Any]]
CHECK_TIMEOUT = 3.0
"""Seconds a readiness check may take before it counts as failed (kubelet's probe timeout
is longer than this, so a hung store turns into a 503, not a probe timeout)."""


def store_checks(services: Any, *, queue: bool = True) -> dict[str, Check]:
    """Readiness of the process's stores: SQL, Redis and (``queue=True``) the run queue."""

    async def sql() -> str:
        await sql_ping(services.engine)
        return "ok"

    async def redis() -> str:
        return "ok" if await ping(services.redis) else "unreachable"

    async def run_queue() -> str:
        return "ok" if await services.queue.ping() else "unreachable"

    checks: dict[str, Check] = {"sql": sql, "redis": redis}
    if queue:
        checks["queue"] = run_queue
    return checks


async def _run_check(name: str, check: Check, timeout: float) -> str:
    try:
        return await asyncio.wait_for(check(), timeout)
    except TimeoutError:
        log.info("%s not ready: no answer within %.0f s", name, timeout)
        return f"unreachable (no answer within {timeout:.0f} s)"
    except Exception as exc:  # readiness reports, it never raises
        log.info("%s not ready: %s", name, type(exc).__name__)
        return f"unreachable ({type(exc).__name__})"


def health_routes(
    checks: Mapping[str, Check],
    *,
    details: Details | None = None,
    timeout: float = CHECK_TIMEOUT,
) -> list[Route]:
    """``GET /healthz`` (the process is alive: always 200) and ``GET /readyz`` (200 when
    every check says "ok", else 503; the body names each check's result, plus ``details``)."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        results = await asyncio.gather(
            *(_run_check(name, check, timeout) for name, check in checks.items())
        )
        outcome = dict(zip(checks, results, strict=True))
        ready = all(v == "ok" for v in outcome.values())
        body: dict[str, Any] = {"status": "ready" if ready else "not ready", **outcome}
        if details is not None:
            body.update(details())
        return JSONResponse(body, status_code=200 if ready else 503)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


def ops_routes(
    bot: Bot,
    services: Any,
    *,
    metrics: bool = True,
    checks: Mapping[str, Check] | None = None,
    details: Details | None = None,
) -> list[Route]:
    """``/healthz``, ``/readyz`` (SQL, Redis, the queue, then ``checks``) and (unless
    ``metrics=False``) ``/metrics``, served in HTTP and in Socket Mode and by workers.
    ``metrics=False`` when ``METRICS_PORT`` moves it elsewhere."""
    routes = health_routes({**store_checks(services), **(checks or {})}, details=details)
    if metrics:
        routes += metrics_routes(bot.metrics)
    return routes


def metrics_routes(registry: Metrics) -> list[Route]:
    """``GET /metrics`` in Prometheus text format."""

    async def metrics_endpoint(_: Request) -> Response:
        return PlainTextResponse(registry.render(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", metrics_endpoint, methods=["GET"])]


def create_metrics_app(bot: Bot) -> Starlette:
    """``/metrics`` alone: what ``METRICS_PORT`` serves, away from the public port."""
    return Starlette(routes=metrics_routes(bot.metrics))


def create_ops_app(
    bot: Bot,
    *,
    services: Any,
    serve_metrics: bool = True,
    checks: Mapping[str, Check] | None = None,
    details: Details | None = None,
) -> Starlette:
    """Health (and metrics, unless on their own port): the HTTP side of a Socket Mode
    process or a worker."""
    return Starlette(
        routes=ops_routes(bot, services, metrics=serve_metrics, checks=checks, details=details)
    )


def create_http_app(
    bot: Bot,
    *,
    signing_secret: str,
    services: Any,
    lifespan: Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]] | None = None,
    clock: Callable[[], float] = time.time,
    serve_metrics: bool = True,
) -> Starlette:
    """The ASGI app for ``switchboard serve`` (and the sandbox); ``serve_metrics=False``
    leaves ``/metrics`` to :func:`create_metrics_app` on ``METRICS_PORT``."""

    metrics = bot.metrics

    async def slack_events(request: Request) -> Response:
        started = time.perf_counter()
        kind = "unknown"
        try:
            body = await read_body(request)
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
            try:
                bolt_request = AsyncBoltRequest(
                    body=body.decode("utf-8"),
                    query=dict(request.query_params),
                    headers=dict(request.headers),
                )
            except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
                # Bolt builds its context from the payload; a shape the check above let
                # through but Bolt cannot read is still the sender's fault.
                raise BadRequest(400, f"payload Bolt cannot read ({type(exc).__name__})") from None
            with tracing.receive_span(kind, transport="http"):
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
            *ops_routes(bot, services, metrics=serve_metrics),
        ],
        lifespan=_lifespan,
    )
