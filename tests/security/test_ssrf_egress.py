"""SSRF: a skill's HTTP tool aimed at internal addresses is refused, and nothing is sent.

Attacks through the whole app (a signed Slack mention, the real runtime, the shared HTTP
client that ``open_services`` builds) on both backends. The target is a real local HTTP
server (loopback): were the egress check missing, it would receive the request - and the
spec's secret ``Authorization`` header - which is exactly what each test rules out. The
positive controls allow-list the same target and see the request arrive.
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
from tests.security.conftest import (
    CRM_TOKEN,
    ORDERS_SKILL,
    ScriptedResolver,
    requests_text,
    tool_results,
    write_skill,
)

REFUSED = "is not an allowed host for HTTP tools here"


@pytest.fixture
def target() -> Iterator[HttpTarget]:
    with HttpTarget() as server:
        server.route("GET", "/orders/42", json={"id": "42", "status": "paid"})
        yield server


def port_of(target: HttpTarget) -> int:
    return int(target.base_url.rsplit(":", 1)[1])


async def ask(
    make_bot: BotFactory,
    tmp_path: Path,
    *,
    crm_url: str,
    resolver: ScriptedResolver | None = None,
    **settings: str,
) -> tuple[BotEnv, ScriptedChatModel, str]:
    """Mention the ``orders`` skill; its scripted model calls ``lookup_order`` once."""
    write_skill(tmp_path / "skills", ORDERS_SKILL)
    model = ScriptedChatModel([tool_call("lookup_order", order_id="42"), reply("Here you go.")])
    runtime = {}
    if resolver is not None:
        allowed = settings.get("SWITCHBOARD_HTTP_ALLOWED_HOSTS", "")
        hosts = tuple(h for h in allowed.split(",") if h)
        runtime["http_policy"] = HttpPolicy(allowed_hosts=hosts, resolver=resolver)
    env = await make_bot(
        {"offline": model},
        skills_env={"CRM_URL": crm_url, "CRM_TOKEN": CRM_TOKEN},
        runtime=runtime,
        SWITCHBOARD_SKILLS_DIR=str(tmp_path / "skills"),
        **settings,
    )
    _, ts = await env.mention("orders where is order 42?", channel="C0GENERAL")
    await env.idle()
    return env, model, ts


def assert_nothing_leaked(
    env: BotEnv, model: ScriptedChatModel, target: HttpTarget, caplog: pytest.LogCaptureFixture
) -> None:
    assert target.requests == [], "the internal target was called"
    posted = "\n".join(str(call) for call in env.slack.calls())
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for where, text in (("Slack", posted), ("model", requests_text(model)), ("logs", logs)):
        assert CRM_TOKEN not in text, f"the CRM token reached {where}"


@pytest.mark.parametrize(
    ("label", "url", "answers"),
    [
        ("a loopback address", "http://127.0.0.1:{port}", None),
        ("localhost", "http://localhost:{port}", None),
        ("a name that resolves to loopback", "http://crm.payco.test:{port}", ["127.0.0.1"]),
        (
            "a name with a public and a loopback answer",
            "http://crm.payco.test:{port}",
            ["93.184.215.14", "127.0.0.1"],
        ),
        ("IPv4-mapped IPv6 loopback", "http://crm.payco.test:{port}", ["::ffff:127.0.0.1"]),
    ],
)
async def test_ssrf_internal_destination_is_refused_and_nothing_is_sent(
    make_bot: BotFactory,
    target: HttpTarget,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    label: str,
    url: str,
    answers: list[str] | None,
) -> None:
    resolver = ScriptedResolver({"crm.payco.test": answers}) if answers else None
    crm_url = url.format(port=port_of(target))
    with caplog.at_level(logging.DEBUG):
        env, model, ts = await ask(make_bot, tmp_path, crm_url=crm_url, resolver=resolver)

    [result] = tool_results(model)
    assert result.status == "error"
    assert result.text.endswith(REFUSED), f"{label}: {result.text}"
    assert env.replies("C0GENERAL", ts)[-1]["text"] == "Here you go."
    assert_nothing_leaked(env, model, target, caplog)
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert any("egress to" in line for line in refusals), refusals


async def test_ssrf_positive_control_allow_listed_target_gets_the_call(
    make_bot: BotFactory, target: HttpTarget, tmp_path: Path
) -> None:
    port = port_of(target)
    _, model, _ = await ask(
        make_bot,
        tmp_path,
        crm_url=f"http://127.0.0.1:{port}",
        SWITCHBOARD_HTTP_ALLOWED_HOSTS=f"127.0.0.1:{port}",
    )
    [result] = tool_results(model)
    assert result.status == "success"
    assert result.text == '{"id": "42", "status": "paid"}'
    [request] = target.requests
    assert request.headers["authorization"] == f"Bearer {CRM_TOKEN}"


async def test_ssrf_allow_list_entry_is_for_its_port_only(
    make_bot: BotFactory, target: HttpTarget, tmp_path: Path
) -> None:
    port = port_of(target)
    _, model, _ = await ask(
        make_bot,
        tmp_path,
        crm_url=f"http://127.0.0.1:{port}",
        SWITCHBOARD_HTTP_ALLOWED_HOSTS=f"127.0.0.1:{port + 1 if port < 65535 else port - 1}",
    )
    [result] = tool_results(model)
    assert result.text.endswith(REFUSED)
    assert target.requests == []


async def test_ssrf_allow_listed_name_connects_to_the_address_it_resolved(
    make_bot: BotFactory, target: HttpTarget, tmp_path: Path
) -> None:
    # The name exists only in the scripted resolver: the request can reach the target only
    # if the transport connects to the address the check saw, keeping the name in Host.
    resolver = ScriptedResolver({"crm.payco.test": ["127.0.0.1"]})
    port = port_of(target)
    _, model, _ = await ask(
        make_bot,
        tmp_path,
        crm_url=f"http://crm.payco.test:{port}",
        resolver=resolver,
        SWITCHBOARD_HTTP_ALLOWED_HOSTS="crm.payco.test",
    )
    [result] = tool_results(model)
    assert result.status == "success", result.text
    [request] = target.requests
    assert request.headers["host"] == f"crm.payco.test:{port}"
    assert request.headers["authorization"] == f"Bearer {CRM_TOKEN}"


async def test_ssrf_dns_rebinding_cannot_reach_an_internal_address(
    make_bot: BotFactory, target: HttpTarget, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # First answer public (what a check-then-connect client would have checked), every
    # later answer loopback (what it would then have connected to).
    resolver = ScriptedResolver({"crm.payco.test": [["93.184.215.14"], ["127.0.0.1"]]})
    with caplog.at_level(logging.DEBUG):
        env, model, _ = await ask(
            make_bot,
            tmp_path,
            crm_url=f"http://crm.payco.test:{port_of(target)}",
            resolver=resolver,
        )
    [result] = tool_results(model)
    assert result.status == "error"
    assert result.text.endswith(REFUSED)
    assert len(resolver.calls) == 2, resolver.calls  # checked, then resolved again: refused
    assert_nothing_leaked(env, model, target, caplog)
