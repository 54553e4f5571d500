"""HTTP tools: one tool per ``http`` entry of a skill spec.

The model sees the tool's name, description and the JSON Schema of its parameters. A call:

1. validates the arguments and renders the request (`skills.spec.render_request`);
2. checks the URL's host against ``runtime.context.http_policy.allowed_hosts`` (empty =
   any host; ``api.example.com`` matches exactly, ``*.example.com`` matches any subdomain
   but not ``example.com`` itself);
3. sends it with the run's shared ``httpx.AsyncClient`` (``runtime.context.http``), with the
   spec's timeout or the policy's, as a hard deadline for the whole exchange. Redirects are
   not followed, so a redirect cannot lead around the host allow-list;
4. reads the body as a stream and stops at ``http_policy.max_response_bytes``: the model
   gets the first N bytes and the line ``[response truncated at N bytes]`` (a partial
   answer is usually more useful than none, and memory stays bounded whatever the size);
5. returns JSON as compact one-line text, anything else as text.

Non-GET/HEAD requests carry an ``Idempotency-Key`` header (``sb-`` + a hash of the thread
and the tool call id by default), so a retried call is deduplicated by the target.

Every failure — invalid arguments, a disallowed host, a timeout, a 4xx/5xx — comes back to
the model as a tool error (``ToolMessage.status == "error"``) with a short reason. Secrets
(header and query values expanded from ``${ENV}``) never appear in what the tool returns
or logs: logs carry method, host, path, status and latency only, and any secret value the
target echoes back is replaced with ``[redacted]``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import httpx
from langchain.tools import ToolRuntime
from langchain_core.tools import BaseTool, StructuredTool, ToolException

from skills.context import HttpPolicy, RunContext
from skills.pii import mask_text
from skills.spec import READ_METHODS, HttpToolSpec, ToolArgumentsError, render_request
from skills.tools.slack import run_context

__all__ = [
    "IdempotencyKeyFn",
    "approval_idempotency_key",
    "host_allowed",
    "http_tool",
    "tool_call_idempotency_key",
]

log = logging.getLogger(__name__)

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


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``host`` passes an allow-list of exact hosts and ``*.suffix`` patterns."""
    if not allowed:
        return True
    host = host.lower().rstrip(".")
    for pattern in allowed:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def http_tool(spec: HttpToolSpec, *, idempotency_key: IdempotencyKeyFn | None = None) -> BaseTool:
    """A langchain tool that performs ``spec``'s HTTP request (see the module docstring).

    ``idempotency_key`` derives the write key from the call's runtime; it defaults to
    `tool_call_idempotency_key`.
    """
    key_fn = idempotency_key or tool_call_idempotency_key
    secrets = _SecretNames.of(spec)

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
    secrets: _SecretNames,
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


class _SecretNames:
    """Which rendered header and query values are secrets (expanded from the environment
    or sensitive by name): those the spec's redacted view does not show as they are."""

    def __init__(self, headers: frozenset[str], query: frozenset[str]) -> None:
        self.headers = headers
        self.query = query

    @classmethod
    def of(cls, spec: HttpToolSpec) -> _SecretNames:
        shown = spec.http.redacted_dict()
        shown_headers = shown.get("headers", {})
        shown_query = shown.get("query", {})
        return cls(
            headers=frozenset(
                name
                for name, value in spec.http.headers.items()
                if shown_headers.get(name) != value
            ),
            query=frozenset(
                name for name, value in spec.http.query.items() if shown_query.get(name) != value
            ),
        )

    def values(self, headers: dict[str, str], params: dict[str, str]) -> list[str]:
        found: set[str] = set()
        for value in [
            *(v for k, v in headers.items() if k in self.headers),
            *(v for k, v in params.items() if k in self.query),
        ]:
            found.add(value)
            found.update(value.split())  # "Bearer abc…" → also "abc…" on its own
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
    secrets: _SecretNames,
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
    if not host_allowed(host, policy.allowed_hosts):
        log.warning("http tool %s: host %s not allowed", spec.name, host)
        raise ToolException(f"{host} is not an allowed host for HTTP tools here")
    client = context.http
    if client is None:
        raise ToolException("HTTP tools are not configured here (the run has no HTTP client)")

    headers = dict(request.headers)
    if request.method not in READ_METHODS and not any(
        name.lower() == "idempotency-key" for name in headers
    ):
        key = key_fn(runtime)
        if key:
            headers["Idempotency-Key"] = key
    secret_values = secrets.values(headers, request.params)
    timeout = request.timeout or policy.timeout
    started = time.monotonic()
    status: int | str = "-"
    try:
        async with asyncio.timeout(timeout):
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
    except (TimeoutError, httpx.TimeoutException):
        status = "timeout"
        raise ToolException(f"{spec.name}: {host} did not answer within {timeout:g} s") from None
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
            url.path,
            status,
            (time.monotonic() - started) * 1000,
        )

    text = _scrub(_decode(body, response), secret_values)
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
            + (f": {excerpt}" if excerpt else "")
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
