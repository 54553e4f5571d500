"""MCP tools: the allow-listed tools of a skill's MCP servers, called like HTTP tools.

The model sees ``<server>_<tool>`` with the description and JSON Schema the server gave
when its tool list was loaded (``skills.mcp``). A call:

1. checks the arguments against that JSON Schema (a clear error the model can correct);
2. for ``streamable_http`` and ``sse`` servers, checks the URL's host against the egress
   policy (``runtime.context.http_policy``, the same one HTTP tools use: internal ranges
   only when allow-listed through ``SWITCHBOARD_HTTP_ALLOWED_HOSTS``), and talks to the
   server through an egress-checked ``httpx`` client (``skills.egress.egress_client``), so
   every connection - DNS rebinding included - is checked again when it is made;
3. opens a session with langchain-mcp-adapters' ``create_session`` (one per call:
   stateless, so a restarted server is simply used again; a stdio server is started for
   the call) within ``CONNECT_TIMEOUT``, and calls the tool within the server's
   ``timeout`` or the policy's, as a hard deadline;
4. returns the text content (other content is named, not passed on), capped at
   ``http_policy.max_response_bytes`` like an HTTP body; the agent middleware then masks
   personal data, trims it to ``tool_result_max_chars`` and wraps it as untrusted data,
   exactly as for HTTP tools, because they act on every tool result.

A call a person approved goes through the approval ledger (recorded before and after it
runs, never run twice once finished) and carries ``_meta.idempotency_key`` =
``sb-approval-<request id>`` - MCP's place for what an HTTP tool sends as an
``Idempotency-Key`` header. Every failure - bad arguments, a refused destination, a
timeout, an unreachable server, an ``isError`` result - reaches the model as a tool error
with a short reason, never as an exception out of the run. Logs carry the server, tool,
outcome and latency only; secrets expanded from ``${ENV}`` are scrubbed from results.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any, Final

import httpx
import jsonschema
from langchain.tools import ToolRuntime
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langchain_mcp_adapters.sessions import (
    Connection,
    SSEConnection,
    StdioConnection,
    StreamableHttpConnection,
    create_session,
)
from mcp.types import CallToolResult, EmbeddedResource, TextContent, TextResourceContents

from skills.context import HttpPolicy, RunContext
from skills.egress import EgressDenied, EgressPolicy, egress_client
from skills.pii import mask_text
from skills.spec import McpServerSpec, McpToolRef
from skills.tools.http import _scrub, _scrub_list, approval_idempotency_key
from skills.tools.slack import run_context

__all__ = [
    "McpUnavailable",
    "check_egress",
    "describe_failure",
    "mcp_connection",
    "mcp_tool",
    "root_cause",
    "unavailable_tool",
]

log = logging.getLogger(f"switchboard.{__name__}")

_ANY_OBJECT: Final[dict[str, Any]] = {"type": "object", "additionalProperties": True}
CONNECT_TIMEOUT: Final = 15.0
"""Seconds to reach a server and finish the MCP handshake (a stdio server starting up)."""


class McpUnavailable(Exception):
    """An MCP server could not be used; ``reason`` is short and safe to show."""

    def __init__(self, server: str, reason: str) -> None:
        self.server = server
        self.reason = reason
        super().__init__(f"MCP server {server}: {reason}")


def _client_factory(policy: EgressPolicy) -> Any:
    """An ``httpx_client_factory`` for the adapters whose clients are egress-checked."""

    def factory(
        headers: dict[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
        auth: httpx.Auth | None = None,
    ) -> httpx.AsyncClient:
        return egress_client(
            policy, headers=headers, timeout=timeout or httpx.Timeout(30.0), auth=auth
        )

    return factory


def mcp_connection(server: McpServerSpec, policy: HttpPolicy) -> Connection:
    """The adapters' connection settings for ``server`` under ``policy``."""
    timeout = server.timeout or policy.timeout
    if server.transport == "stdio":
        return StdioConnection(
            transport="stdio",
            command=server.command[0],
            args=list(server.command[1:]),
            env=dict(server.env) or None,  # None: the SDK's minimal PATH/HOME/USER set
        )
    assert server.url is not None
    if server.transport == "sse":
        return SSEConnection(
            transport="sse",
            url=server.url,
            headers=dict(server.headers),
            timeout=timeout,
            sse_read_timeout=timeout,
            httpx_client_factory=_client_factory(policy.egress),
        )
    return StreamableHttpConnection(
        transport="streamable_http",
        url=server.url,
        headers=dict(server.headers),
        timeout=timeout,
        sse_read_timeout=timeout,
        httpx_client_factory=_client_factory(policy.egress),
    )


async def check_egress(server: McpServerSpec, policy: HttpPolicy) -> None:
    """Refuse a remote server's host before anything is sent (``EgressDenied``)."""
    if not server.is_remote or server.url is None:
        return
    url = httpx.URL(server.url)
    port = url.port or (443 if url.scheme == "https" else 80)
    await policy.egress.check(url.raw_host.decode("ascii"), port)


def root_cause(exc: BaseException) -> BaseException:
    """The first leaf of (nested) exception groups: what the MCP client's task groups hid."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _where(server: McpServerSpec) -> str:
    if server.is_remote and server.url:
        return httpx.URL(server.url).host or server.name
    return "stdio"


def mcp_tool(
    server: McpServerSpec,
    ref: McpToolRef,
    *,
    description: str,
    schema: Mapping[str, Any] | None,
    read_only: bool,
) -> BaseTool:
    """A langchain tool that calls ``ref`` on ``server`` (see the module docstring)."""
    name = server.model_name(ref.name)
    args_schema = dict(schema) if isinstance(schema, Mapping) and schema else dict(_ANY_OBJECT)
    args_schema.setdefault("type", "object")
    validator = jsonschema.Draft202012Validator(args_schema)
    secrets = _scrub_list(server.secrets)

    async def call(runtime: ToolRuntime[RunContext], **arguments: Any) -> str:
        problems = sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
        if problems:
            raise ToolException(
                f"invalid arguments for {name}: "
                + "; ".join(
                    f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                    if e.absolute_path
                    else e.message
                    for e in problems
                )
            )
        context = run_context(runtime)
        request_id = context.approvals.get(runtime.tool_call_id or "")
        if request_id is None or context.ledger is None:
            return await _execute(server, ref, context.http_policy, arguments, secrets, None)
        ledger = context.ledger
        key = approval_idempotency_key(request_id)
        prior = await ledger.begin_execution(request_id, key)
        if prior is not None:
            log.info(
                "mcp tool %s: approval %s already executed; not calling again", name, request_id
            )
            if prior.ok:
                return prior.result
            raise ToolException(prior.result)
        try:
            text = await _execute(server, ref, context.http_policy, arguments, secrets, key)
        except ToolException as exc:
            await ledger.finish_execution(request_id, ok=False, result=mask_text(str(exc)))
            raise
        await ledger.finish_execution(request_id, ok=True, result=mask_text(text))
        return text

    return StructuredTool(
        name=name,
        description=description.strip() or f"{ref.name} (MCP server {server.name})",
        args_schema=args_schema,
        coroutine=call,
        handle_tool_error=True,
        metadata={
            "mcp_server": server.name,
            "mcp_tool": ref.name,
            "read_only": read_only,
            "write": not read_only,
        },
    )


def unavailable_tool(server: McpServerSpec, ref: McpToolRef, reason: str) -> BaseTool:
    """Stands in for an allow-listed tool of a server that could not be loaded: the model
    may still pick it, and gets a clear tool error instead of the run failing."""
    name = server.model_name(ref.name)
    message = (
        f"{name} is unavailable: the MCP server {server.name} could not be reached "
        f"({reason}). Tell the user this tool is unavailable right now."
    )

    async def call(**_arguments: Any) -> str:
        raise ToolException(message)

    return StructuredTool(
        name=name,
        description=f"Currently unavailable (MCP server {server.name} unreachable).",
        args_schema=dict(_ANY_OBJECT),
        coroutine=call,
        handle_tool_error=True,
        metadata={"mcp_server": server.name, "mcp_tool": ref.name, "unavailable": True},
    )


async def _execute(
    server: McpServerSpec,
    ref: McpToolRef,
    policy: HttpPolicy,
    arguments: dict[str, Any],
    secrets: list[str],
    idempotency_key: str | None,
) -> str:
    name = server.model_name(ref.name)
    timeout = server.timeout or policy.timeout
    started = time.monotonic()
    status = "-"
    try:
        result = await _call(server, ref, policy, arguments, idempotency_key, timeout)
        status = "error-result" if result.isError else "ok"
    except EgressDenied as exc:
        status = "refused"
        log.warning("mcp tool %s: %s", name, _scrub(str(exc), secrets))
        raise ToolException(
            f"{_where(server)} is not an allowed host for MCP servers here"
        ) from None
    except (Exception, BaseExceptionGroup) as exc:  # transport and protocol failures alike
        cause = root_cause(exc)
        if isinstance(cause, _CallTimedOut):
            status = "timeout"
            raise ToolException(
                f"{name}: the MCP server {server.name} did not answer within {timeout:g} s"
            ) from None
        if isinstance(cause, EgressDenied):
            status = "refused"
            log.warning("mcp tool %s: %s", name, _scrub(str(cause), secrets))
            raise ToolException(
                f"{_where(server)} is not an allowed host for MCP servers here"
            ) from None
        status = type(cause).__name__
        raise ToolException(
            f"{name}: could not reach the MCP server {server.name} ({type(cause).__name__})"
        ) from None
    finally:
        log.info(
            "mcp tool %s server=%s transport=%s at=%s -> %s in %.0f ms",
            ref.name,
            server.name,
            server.transport,
            _where(server),
            status,
            (time.monotonic() - started) * 1000,
        )
    text = _scrub(_result_text(result), secrets)
    limit = policy.max_response_bytes
    if len(text.encode()) > limit:
        text = text.encode()[:limit].decode(errors="ignore")
        text += f"\n[response truncated at {limit} bytes]"
    if result.isError:
        raise ToolException(f"{name} failed: {text}" if text.strip() else f"{name} failed")
    return text if text.strip() else f"{name}: done (empty result)"


async def _call(
    server: McpServerSpec,
    ref: McpToolRef,
    policy: HttpPolicy,
    arguments: dict[str, Any],
    idempotency_key: str | None,
    timeout: float,
) -> CallToolResult:
    """One session, one call. Reaching the server (a stdio server's start-up included) has
    its own budget; ``timeout`` bounds the call itself - what the tool may take."""
    meta = {"idempotency_key": idempotency_key} if idempotency_key else None
    async with asyncio.timeout(max(timeout, CONNECT_TIMEOUT)):
        await check_egress(server, policy)
    async with create_session(mcp_connection(server, policy)) as session:
        async with asyncio.timeout(max(timeout, CONNECT_TIMEOUT)):
            await session.initialize()
        try:
            async with asyncio.timeout(timeout):
                return await session.call_tool(ref.name, arguments, meta=meta)
        except TimeoutError:
            raise _CallTimedOut from None


class _CallTimedOut(Exception):
    """The tool call itself overran its timeout (the server was reached)."""


def _result_text(result: CallToolResult) -> str:
    """The text of a result: text blocks joined; other blocks named; structured content
    as JSON when there is no text."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif isinstance(block, EmbeddedResource) and isinstance(
            block.resource, TextResourceContents
        ):
            parts.append(block.resource.text)
        else:
            parts.append(f"[{block.type} content not shown]")
    if not parts and result.structuredContent is not None:
        parts.append(json.dumps(result.structuredContent, ensure_ascii=False))
    return "\n".join(parts)


def describe_failure(exc: BaseException) -> str:
    """A short reason for an unusable server, safe for ``skills list`` and tool errors."""
    cause = root_cause(exc)
    if isinstance(cause, EgressDenied):
        return "refused by the egress policy (SWITCHBOARD_HTTP_ALLOWED_HOSTS)"
    if isinstance(cause, TimeoutError):
        return "timed out"
    if isinstance(cause, httpx.HTTPStatusError):
        return f"HTTP {cause.response.status_code}"
    return type(cause).__name__
