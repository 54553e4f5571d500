"""HTTP tools: one tool per ``http`` entry of a skill spec.

The model sees the tool's name, description and the JSON Schema of its parameters. A call:

1. validates the arguments and renders the request (`skills.spec.render_request`; an
   argument that would make a ``.``/``..`` path segment is refused there);
2. checks the destination against the egress policy (``skills.egress``, configured by
   ``runtime.context.http_policy``): public hosts pass, internal addresses (loopback,
   link-local and the metadata server, private ranges…) only when allow-listed. The check
   here gives the model a clear refusal before anything is sent; the shared client's
   transport (``skills.egress.EgressTransport``) checks again when it connects and connects
   to the address it checked, so DNS rebinding between the two cannot slip through;
3. sends it with the run's shared ``httpx.AsyncClient`` (``runtime.context.http``), with the
   spec's timeout or the policy's, as a hard deadline for the whole exchange. Redirects are
   not followed, so a redirect cannot lead around the egress policy;
4. reads the body as a stream and stops at ``http_policy.max_response_bytes``: the model
   gets the first N bytes and the line ``[response truncated at N bytes]`` (a partial
   answer is usually more useful than none, and memory stays bounded whatever the size);
5. returns JSON as compact one-line text, anything else as text.

Non-GET/HEAD requests carry an ``Idempotency-Key`` header (``sb-`` + a hash of the thread
and the tool call id by default), so a retried call is deduplicated by the target.

Every failure — invalid arguments, a refused destination, a timeout, a 4xx/5xx — comes back
to the model as a tool error (``ToolMessage.status == "error"``) with a short reason.
Secrets (every value expanded from ``${ENV}``, and literal values of credential-like headers,
query parameters and JSON keys: ``HttpSpec.secrets``) never appear in what the tool returns
or logs: logs carry method, host, path, status and latency only, and any secret the target
echoes back — as sent, percent-encoded or JSON-escaped — is replaced with ``[redacted]``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote

import httpx
from langchain.tools import ToolRuntime
from langchain_core.tools import BaseTool, StructuredTool, ToolException

from skills.context import HttpPolicy, RunContext
from skills.egress import EgressDenied, host_matches
from skills.pii import mask_text
from skills.spec import READ_METHODS, HttpToolSpec, ToolArgumentsError, render_request
from skills.tools.slack import run_context

__all__ = [
    "IdempotencyKeyFn",
    "approval_idempotency_key",
    "host_matches",
    "http_tool",
    "tool_call_idempotency_key",
]

log = logging.getLogger(f"switchboard.{__name__}")

IdempotencyKeyFn = Callable[[ToolRuntime[RunContext]], str | None]
"""Derives the ``Idempotency-Key`` of a write call from its runtime; None sends none."""

_EXCERPT_CHARS: Final = 300
_MIN_SECRET_CHARS: Final = 6
_REDACTED: Final = "[redacted]"


def approval_idempotency_key(request_id: str) -> str:
    """The key of a call a person approved: derived from the approval request only."""
    return f"sb-approval-{request_id}"


def tool_call_idempotency_key(runtime: ToolRuntime[RunContext]) -> str | None:
    """The write key of a call: from its approval request when a person approved it, else
    ``sb-`` + 32 hex chars of sha256(thread id, tool call id); None without a call id.

    The same tool call replayed (a retry after a crash, a resumed run) gets the same key.
    """
    if not runtime.tool_call_id:
        return None
    request_id = run_context(runtime).approvals.get(runtime.tool_call_id)
    if request_id:
        return approval_idempotency_key(request_id)
    thread_id = run_context(runtime).thread.thread_id
    digest = hashlib.sha256(f"{thread_id}\n{runtime.tool_call_id}".encode()).hexdigest()
    return f"sb-{digest[:32]}"


def http_tool(spec: HttpToolSpec, *, idempotency_key: IdempotencyKeyFn | None = None) -> BaseTool:
    """A langchain tool that performs ``spec``'s HTTP request (see the module docstring).

    ``idempotency_key`` derives the write key from the call's runtime; it defaults to
    `tool_call_idempotency_key`.
    """
    key_fn = idempotency_key or tool_call_idempotency_key
    secrets = _scrub_list(spec.http.secrets)

    async def call(runtime: ToolRuntime[RunContext], **arguments: Any) -> str:
        context = run_context(runtime)
        request_id = context.approvals.get(runtime.tool_call_id or "")
        if request_id is None or context.ledger is None:
            return await _execute(spec, runtime, arguments, key_fn=key_fn, secrets=secrets)
        return await _execute_once(
            spec, runtime, arguments, request_id, context, key_fn=key_fn, secrets=secrets
        )

    return StructuredTool(
        name=spec.name,
        description=spec.description,
        args_schema=spec.json_schema(),
        coroutine=call,
        handle_tool_error=True,
        metadata={"http_method": spec.http.method, "write": spec.is_write},
    )


async def _execute_once(
    spec: HttpToolSpec,
    runtime: ToolRuntime[RunContext],
    arguments: dict[str, Any],
    request_id: str,
    context: RunContext,
    *,
    key_fn: IdempotencyKeyFn,
    secrets: list[str],
) -> str:
    """An approved call, recorded before and after it runs.

    Crash windows: before ``begin`` → nothing happened, the resumed run calls. Between
    ``begin`` and ``finish`` (the call may or may not have reached the target) → the
    resumed run calls again with the same Idempotency-Key, and the target answers the
    first call's result without acting twice. After ``finish`` → the recorded result is
    returned and the target is not called again.
    """
    ledger = context.ledger
    assert ledger is not None
    key = key_fn(runtime) or approval_idempotency_key(request_id)
    prior = await ledger.begin_execution(request_id, key)
    if prior is not None:
        log.info(
            "http tool %s: approval %s already executed; not calling again", spec.name, request_id
        )
        if prior.ok:
            return prior.result
        raise ToolException(prior.result)
    try:
        text = await _execute(spec, runtime, arguments, key_fn=key_fn, secrets=secrets)
    except ToolException as exc:
        await ledger.finish_execution(request_id, ok=False, result=mask_text(str(exc)))
        raise
    await ledger.finish_execution(request_id, ok=True, result=mask_text(text))
    return text


def _scrub_list(values: frozenset[str]) -> list[str]:
    """The strings to redact for ``values``: each as sent, percent-encoded and JSON-escaped,
    and the words of multi-word values ("Bearer abc…" → also "abc…"), longest first."""
    found: set[str] = set()
    for value in values:
        for form in (value, *value.split()):
            found.update({form, quote(form, safe=""), json.dumps(form)[1:-1]})
    return sorted((v for v in found if len(v) >= _MIN_SECRET_CHARS), key=len, reverse=True)


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    return text


async def _execute(
    spec: HttpToolSpec,
    runtime: ToolRuntime[RunContext],
    arguments: dict[str, Any],
    *,
    key_fn: IdempotencyKeyFn,
    secrets: list[str],
) -> str:
    context = run_context(runtime)
    try:
        request = render_request(spec, arguments)
    except ToolArgumentsError as exc:
        raise ToolException(str(exc)) from exc

    url = httpx.URL(request.url)
    host = url.host
    policy: HttpPolicy = context.http_policy
    if url.scheme not in ("http", "https") or not host:
        raise ToolException(f"{spec.name} has no usable URL (check the skill's configuration)")
    client = context.http
    if client is None:
        raise ToolException("HTTP tools are not configured here (the run has no HTTP client)")
    port = url.port or (443 if url.scheme == "https" else 80)

    headers = dict(request.headers)
    if request.method not in READ_METHODS and not any(
        name.lower() == "idempotency-key" for name in headers
    ):
        key = key_fn(runtime)
        if key:
            headers["Idempotency-Key"] = key
    timeout = request.timeout or policy.timeout
    started = time.monotonic()
    status: int | str = "-"
    try:
        async with asyncio.timeout(timeout):
            await policy.egress.check(url.raw_host.decode("ascii"), port)
            async with client.stream(
                request.method,
                url,
                headers=headers,
                params=request.params or None,
                json=request.json,
                timeout=timeout,
                follow_redirects=False,
            ) as response:
                status = response.status_code
                body, truncated = await _read_capped(response, policy.max_response_bytes)
    except EgressDenied as exc:
        status = "refused"
        log.warning("http tool %s: %s", spec.name, _scrub(str(exc), secrets))
        raise ToolException(f"{host} is not an allowed host for HTTP tools here") from None
    except (TimeoutError, httpx.TimeoutException):
        status = "timeout"
        raise ToolException(f"{spec.name}: {host} did not answer within {timeout:g} s") from None
    except OSError as exc:  # the name did not resolve (checked before sending)
        status = type(exc).__name__
        raise ToolException(f"{spec.name}: could not reach {host} (ConnectError)") from None
    except httpx.TransportError as exc:
        status = type(exc).__name__
        raise ToolException(f"{spec.name}: could not reach {host} ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        status = type(exc).__name__
        raise ToolException(f"{spec.name}: the request failed ({type(exc).__name__})") from None
    finally:
        log.info(
            "http tool %s %s %s%s -> %s in %.0f ms",
            spec.name,
            request.method,
            host,
            _scrub(url.path, secrets),
            status,
            (time.monotonic() - started) * 1000,
        )

    text = _scrub(_decode(body, response), secrets)
    if response.is_redirect:
        target = httpx.URL(response.headers.get("location", "")).host or "another URL"
        raise ToolException(
            f"HTTP {response.status_code} from {host}: redirected to {target}; "
            "redirects are not followed"
        )
    if response.status_code >= 400:
        excerpt = " ".join(text.split())[:_EXCERPT_CHARS]
        reason = response.reason_phrase or ""
        raise ToolException(
            f"HTTP {response.status_code} {reason} from {host}".rstrip()
            + (f": {_scrub(excerpt, secrets)}" if excerpt else "")
        )
    if truncated:
        return f"{text}\n[response truncated at {policy.max_response_bytes} bytes]"
    if not text.strip():
        return f"HTTP {response.status_code} {response.reason_phrase} (empty body)".strip()
    if "json" in response.headers.get("content-type", ""):
        try:
            data = json.loads(text)
        except ValueError:
            return text
        return json.dumps(data, ensure_ascii=False, separators=(", ", ": "))
    return text


async def _read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the (decoded) body, and whether there was more."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        if size + len(chunk) > limit:
            chunks.append(chunk[: limit - size])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def _decode(body: bytes, response: httpx.Response) -> str:
    encoding = response.charset_encoding or "utf-8"
    try:
        return body.decode(encoding, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")
