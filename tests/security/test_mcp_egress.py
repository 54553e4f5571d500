"""SSRF through MCP: a skill's MCP server aimed at internal addresses is refused.

An MCP server URL comes from a skill spec, like an HTTP tool's, and carries the spec's
credentials (``headers:``). The attacks run through the whole app (a signed mention, the
runtime and the MCP toolbox that ``open_services`` loads at start): the tool list is never
fetched and no call is sent, the skill shows as degraded, and the turn gets a clear tool
error. The loopback target is a recording HTTP server, so "nothing was sent" is counted;
the metadata address is refused before any connection is attempted. The positive controls
allow-list a real FastMCP server on loopback and see the call arrive with the token.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from skills.context import HttpPolicy
from tests.bot.conftest import BotEnv, BotFactory
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.http_target import HttpTarget
from tests.fakes.mcp_server import McpServerProcess
from tests.security.conftest import CRM_TOKEN, ScriptedResolver, tool_results, write_skill

MCP_SKILL = """\
name: orders
description: Look up orders in the CRM.
instructions: Look up orders for the support team.
mcp:
  - name: crm
    transport: {transport}
    url: "{url}"
    headers: {{Authorization: "Bearer ${{CRM_TOKEN}}"}}
    tools: [lookup_order]
"""


@pytest.fixture
def target() -> Iterator[HttpTarget]:
    with HttpTarget() as server:
        server.route("POST", "/mcp", json={"jsonrpc": "2.0", "id": 0, "result": {}})
        yield server


def port_of(target: HttpTarget) -> int:
    return int(target.base_url.rsplit(":", 1)[1])


async def ask(
    make_bot: BotFactory,
    tmp_path: Path,
    *,
    url: str,
    transport: str = "streamable_http",
    resolver: ScriptedResolver | None = None,
    **settings: str,
) -> tuple[BotEnv, ScriptedChatModel, str]:
    """Mention the ``orders`` skill; its scripted model calls ``crm_lookup_order`` once."""
    write_skill(tmp_path / "skills", MCP_SKILL.format(url=url, transport=transport))
    model = ScriptedChatModel([tool_call("crm_lookup_order", order_id="42"), reply("Here you go.")])
    runtime = {}
    if resolver is not None:
        allowed = settings.get("SWITCHBOARD_HTTP_ALLOWED_HOSTS", "")
        hosts = tuple(h for h in allowed.split(",") if h)
        runtime["http_policy"] = HttpPolicy(allowed_hosts=hosts, resolver=resolver)
    env = await make_bot(
        {"offline": model},
        skills_env={"CRM_TOKEN": CRM_TOKEN},
        runtime=runtime,
        SWITCHBOARD_SKILLS_DIR=str(tmp_path / "skills"),
        **settings,
    )
    _, ts = await env.mention("orders where is order 42?", channel="C0GENERAL")
    await env.idle()
    return env, model, ts


def assert_refused(
    env: BotEnv, model: ScriptedChatModel, ts: str, caplog: pytest.LogCaptureFixture
) -> None:
    health = env.services.runtime.mcp.health(env.services.registry.get("orders"))
    assert health.degraded
    assert health.summary() == (
        "mcp crm unreachable (refused by the egress policy (SWITCHBOARD_HTTP_ALLOWED_HOSTS))"
    )
    [result] = tool_results(model)
    assert result.status == "error"
    assert "crm_lookup_order is unavailable: the MCP server crm could not be reached" in result.text
    assert env.replies("C0GENERAL", ts)[-1]["text"] == "Here you go."  # answered, no crash
    posted = "\n".join(str(call) for call in env.slack.calls())
    for where, text in (("Slack", posted), ("logs", caplog.text)):
        assert CRM_TOKEN not in text, f"the CRM token reached {where}"
    assert any(
        "egress to" in r.getMessage() or "degraded" in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize(
    ("label", "url", "answers"),
    [
        ("a loopback address", "http://127.0.0.1:{port}/mcp", None),
        ("localhost", "http://localhost:{port}/mcp", None),
        ("a name that resolves to loopback", "http://crm.payco.test:{port}/mcp", ["127.0.0.1"]),
        # First answer public (what a check-then-connect client would have trusted), later
        # answers loopback: the egress-checked client refuses when it connects.
        (
            "DNS rebinding",
            "http://crm.payco.test:{port}/mcp",
            [["93.184.215.14"], ["127.0.0.1"]],
        ),
    ],
)
async def test_mcp_server_on_an_internal_address_is_refused_and_nothing_is_sent(
    make_bot: BotFactory,
    target: HttpTarget,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    label: str,
    url: str,
    answers: list[str] | None,
) -> None:
    resolver = ScriptedResolver({"crm.payco.test": answers}) if answers else None
    with caplog.at_level(logging.DEBUG):
        env, model, ts = await ask(
            make_bot, tmp_path, url=url.format(port=port_of(target)), resolver=resolver
        )
    assert target.requests == [], f"{label}: the internal target was called"
    assert_refused(env, model, ts, caplog)


@pytest.mark.parametrize("transport", ["streamable_http", "sse"])
async def test_mcp_server_on_the_metadata_address_is_refused(
    make_bot: BotFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    # Refused on the address alone, before any connection is attempted.
    with caplog.at_level(logging.DEBUG):
        env, model, ts = await ask(
            make_bot, tmp_path, url="http://169.254.169.254/mcp", transport=transport
        )
    assert_refused(env, model, ts, caplog)


async def test_mcp_positive_control_allow_listed_server_gets_the_call(
    make_bot: BotFactory, tmp_path: Path
) -> None:
    with McpServerProcess(tmp_path / "calls.jsonl") as server:
        env, model, ts = await ask(
            make_bot,
            tmp_path,
            url=server.url,
            SWITCHBOARD_HTTP_ALLOWED_HOSTS=f"127.0.0.1:{server.port}",
        )
        calls = server.calls
    assert not env.services.runtime.mcp.health(env.services.registry.get("orders")).degraded
    [result] = tool_results(model)
    assert result.status == "success", result.text
    assert '"status": "paid"' in result.text
    assert [c["arguments"] for c in calls] == [{"order_id": "42"}]
    assert env.replies("C0GENERAL", ts)[-1]["text"] == "Here you go."
