"""HTTP tools from skill specs, called by a real agent against a local HTTP server."""

from __future__ import annotations

import hashlib
import logging
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import BaseTool

from skills.context import Actor, HttpPolicy, RunContext, ThreadRef
from skills.spec import HttpToolSpec, load_spec_text
from skills.tools import host_matches, http_tool
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.http_target import HttpTarget

TOKEN = "s3cr3t-crm-token-7f2a"
THREAD = ThreadRef("T0PAYCO", "C0PAYMENTS", "1715680000.000100")

SPEC = """
name: crm
description: Orders and refunds.
instructions: Help the support team.
tools:
  - name: lookup_order
    description: Fetch an order by id.
    http:
      method: GET
      url: "${CRM_URL}/orders/{order_id}"
      headers: {Authorization: "Bearer ${CRM_TOKEN}", Accept: application/json}
      query: {api_key: "${CRM_TOKEN}"}
    parameters:
      order_id: {type: string}
  - name: issue_refund
    description: Refund an order.
    http:
      method: POST
      url: "${CRM_URL}/refunds"
      headers: {Authorization: "Bearer ${CRM_TOKEN}"}
      json: {order_id: "{order_id}", amount: "{amount}", note: "refund for {order_id}"}
    parameters:
      order_id: {type: string}
      amount: {type: number, minimum: 0, maximum: 5000}
    approval: none
  - name: slow_report
    description: A report that takes a while.
    http:
      method: GET
      url: "${CRM_URL}/slow"
      timeout: 0.3
  - name: export_all
    description: Export everything.
    http:
      method: GET
      url: "${CRM_URL}/export"
"""


@pytest.fixture
def target() -> Iterator[HttpTarget]:
    with HttpTarget() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as shared:
        yield shared


def tools(base_url: str) -> dict[str, HttpToolSpec]:
    spec = load_spec_text(SPEC, filename="crm.yaml", env={"CRM_URL": base_url, "CRM_TOKEN": TOKEN})
    return {tool.name: tool for tool in spec.http_tools}


# The target listens on loopback, an internal address: it must be allow-listed explicitly.
LOCAL = HttpPolicy(allowed_hosts=("127.0.0.1",))


def run_context(client: httpx.AsyncClient | None, policy: HttpPolicy | None = None) -> RunContext:
    return RunContext(
        run_id="run-1",
        skill="crm",
        thread=THREAD,
        actor=Actor(user_id="U0SAM", tz="America/New_York"),
        http=client,
        http_policy=policy or LOCAL,
    )


async def call(tool: BaseTool, ctx: RunContext, **args: Any) -> ToolMessage:
    """Have a scripted model call the tool once through `create_agent`; its ToolMessage."""
    model = ScriptedChatModel([tool_call(tool.name, **args), reply("done")])
    agent = create_agent(model=model, tools=[tool], context_schema=RunContext)
    result = await agent.ainvoke({"messages": [HumanMessage("go")]}, context=ctx)
    [message] = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    return message


def test_the_model_sees_the_specs_description_and_parameters() -> None:
    spec = tools("https://crm.example.com")["issue_refund"]
    tool = http_tool(spec)
    assert tool.name == "issue_refund"
    assert tool.description == "Refund an order."
    assert tool.tool_call_schema == {
        "description": "Refund an order.",
        "type": "object",
        "properties": {
            "order_id": {"type": "string"},
            "amount": {"type": "number", "minimum": 0, "maximum": 5000},
        },
        "required": ["order_id", "amount"],
        "additionalProperties": False,
    }


async def test_get_encodes_the_path_parameter_and_returns_compact_json(
    target: HttpTarget, client: httpx.AsyncClient
) -> None:
    target.route(
        "GET", "/orders/A%2F7%2042", json={"id": "A/7 42", "status": "paid", "amount": 12.5}
    )
    tool = http_tool(tools(target.base_url)["lookup_order"])

    message = await call(tool, run_context(client), order_id="A/7 42")

    assert message.status == "success"
    assert message.text == '{"id": "A/7 42", "status": "paid", "amount": 12.5}'
    [request] = target.requests
    assert request.path == "/orders/A%2F7%2042"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.query == {"api_key": [TOKEN]}
    assert "idempotency-key" not in request.headers


async def test_post_sends_a_typed_json_body_and_an_idempotency_key(
    target: HttpTarget, client: httpx.AsyncClient
) -> None:
    target.route("POST", "/refunds", status=201, json={"refund_id": "RF-1", "state": "queued"})
    tool = http_tool(tools(target.base_url)["issue_refund"])

    message = await call(tool, run_context(client), order_id="42", amount=10.5)

    assert message.status == "success"
    assert message.text == '{"refund_id": "RF-1", "state": "queued"}'
    [request] = target.requests
    assert request.json() == {"order_id": "42", "amount": 10.5, "note": "refund for 42"}
    seed = f"{THREAD.thread_id}\n{message.tool_call_id}".encode()
    assert request.headers["idempotency-key"] == "sb-" + hashlib.sha256(seed).hexdigest()[:32]


async def test_a_retried_call_sends_the_same_idempotency_key(
    target: HttpTarget, client: httpx.AsyncClient
) -> None:
    target.route("POST", "/refunds", json={"ok": True})
    tool = http_tool(tools(target.base_url)["issue_refund"])
    await call(tool, run_context(client), order_id="42", amount=10)
    await call(tool, run_context(client), order_id="42", amount=10)
    first, second = target.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


async def test_the_idempotency_key_derivation_is_pluggable(
    target: HttpTarget, client: httpx.AsyncClient
) -> None:
    target.route("POST", "/refunds", json={"ok": True})
    spec = tools(target.base_url)["issue_refund"]
    await call(
        http_tool(spec, idempotency_key=lambda rt: "approval-123"),
        run_context(client),
        order_id="1",
        amount=1,
    )
    await call(http_tool(spec, idempotency_key=lambda rt: None), run_context(client),
               order_id="2", amount=1)  # fmt: skip
    first, second = target.requests
    assert first.headers["idempotency-key"] == "approval-123"
    assert "idempotency-key" not in second.headers


async def test_invalid_arguments_are_reported_and_nothing_is_sent(
    target: HttpTarget, client: httpx.AsyncClient
) -> None:
    tool = http_tool(tools(target.base_url)["issue_refund"])
    message = await call(tool, run_context(client), order_id="42", amount=-5)
    assert message.status == "error"
    assert message.text.startswith("invalid arguments for issue_refund: amount:")
    assert target.requests == []


async def test_404_is_an_error_with_the_status_and_an_excerpt(
    target: HttpTarget, client: httpx.AsyncClient
) -> None:
    target.route("GET", "/orders/99", status=404, json={"error": "no order 99"})
    message = await call(
        http_tool(tools(target.base_url)["lookup_order"]), run_context(client), order_id="99"
    )
    assert message.status == "error"
    assert message.text == 'HTTP 404 Not Found from 127.0.0.1: {"error": "no order 99"}'


async def test_500_is_an_error_with_a_short_excerpt(
    target: HttpTarget, client: httpx.AsyncClient
) -> None:
    target.route("GET", "/orders/1", status=500, text="Internal error\n" + "trace line\n" * 500)
    message = await call(
        http_tool(tools(target.base_url)["lookup_order"]), run_context(client), order_id="1"
    )
    assert message.status == "error"
    assert message.text.startswith("HTTP 500 Internal Server Error from 127.0.0.1: Internal error")
    assert len(message.text) < 400


async def test_a_slow_target_times_out_with_the_specs_timeout(
    target: HttpTarget, client: httpx.AsyncClient
) -> None:
    target.route("GET", "/slow", json={"ok": True}, delay=3)
    started = time.monotonic()
    message = await call(http_tool(tools(target.base_url)["slow_report"]), run_context(client))
    assert time.monotonic() - started < 2
    assert message.status == "error"
    assert message.text == "slow_report: 127.0.0.1 did not answer within 0.3 s"


async def test_an_unreachable_target_is_an_error(client: httpx.AsyncClient) -> None:
    with socket.socket() as sock:  # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tool = http_tool(tools(f"http://127.0.0.1:{port}")["lookup_order"])
    message = await call(tool, run_context(client), order_id="1")
    assert message.status == "error"
    assert message.text == "lookup_order: could not reach 127.0.0.1 (ConnectError)"


async def test_a_huge_body_is_cut_at_the_cap_without_loading_it(
    target: HttpTarget, client: httpx.AsyncClient
) -> None:
    target.route("GET", "/export", size=5_000_000, headers={"Content-Type": "text/plain"})
    policy = HttpPolicy(allowed_hosts=("127.0.0.1",), max_response_bytes=100_000)
    tool = http_tool(tools(target.base_url)["export_all"])

    tracemalloc.start()
    try:
        message = await call(tool, run_context(client, policy))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert message.status == "success"
    assert message.text == "x" * 100_000 + "\n[response truncated at 100000 bytes]"
    # tracemalloc sees every thread, the local target's included, whose buffers grow when the
    # machine is loaded; loading the body would need at least its 5 MB at once.
    assert peak < 4_000_000, f"peak {peak} bytes: the 5 MB body was loaded"


async def test_a_host_outside_the_allow_list_is_refused(
    target: HttpTarget, client: httpx.AsyncClient
) -> None:
    policy = HttpPolicy(allowed_hosts=("*.example.com", "crm.internal"))
    tool = http_tool(tools(target.base_url)["lookup_order"])
    message = await call(tool, run_context(client, policy), order_id="1")
    assert message.status == "error"
    assert message.text == "127.0.0.1 is not an allowed host for HTTP tools here"
    assert target.requests == []


@pytest.mark.parametrize(
    ("host", "allowed", "ok"),
    [
        ("anything.test", (), False),  # names only: public hosts pass by their addresses
        ("crm.example.com", ("crm.example.com",), True),
        ("CRM.Example.com", ("crm.example.com",), True),
        ("api.crm.example.com", ("*.example.com",), True),
        ("example.com", ("*.example.com",), False),
        ("evilexample.com", ("*.example.com",), False),
        ("crm.example.com.evil.test", ("crm.example.com",), False),
        ("other.test", ("crm.example.com", "*.example.com"), False),
    ],
)
def test_host_allow_list(host: str, allowed: tuple[str, ...], ok: bool) -> None:
    assert host_matches(host, allowed) is ok


async def test_without_an_http_client_the_tool_says_it_is_not_configured(
    target: HttpTarget,
) -> None:
    message = await call(
        http_tool(tools(target.base_url)["lookup_order"]), run_context(None), order_id="1"
    )
    assert message.status == "error"
    assert message.text == "HTTP tools are not configured here (the run has no HTTP client)"


async def test_secrets_never_reach_the_model_or_the_logs(
    target: HttpTarget, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    # a careless target that echoes the credentials back, in a success and in an error
    target.route("GET", "/orders/1", json={"seen_auth": f"Bearer {TOKEN}", "key": TOKEN})
    target.route("GET", "/orders/2", status=401, text=f"bad token {TOKEN}")
    tool = http_tool(tools(target.base_url)["lookup_order"])

    with caplog.at_level(logging.DEBUG):
        ok = await call(tool, run_context(client), order_id="1")
        denied = await call(tool, run_context(client), order_id="2")

    assert ok.text == '{"seen_auth": "[redacted]", "key": "[redacted]"}'
    assert denied.status == "error"
    assert denied.text == "HTTP 401 Unauthorized from 127.0.0.1: bad token [redacted]"
    # our own log lines; httpx's INFO line shows the full URL (query included), so the
    # deployment's logging setup keeps the "httpx" logger at WARNING
    ours = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith("switchboard.skills.")
    )
    assert TOKEN not in ours
    assert "lookup_order GET 127.0.0.1/orders/1 -> 200" in ours
    assert "lookup_order GET 127.0.0.1/orders/2 -> 401" in ours
