"""SSRF: every internal range is refused - metadata server, private networks, IPv6 forms.

A real agent calls a spec's HTTP tool through the production client
(``skills.egress.egress_client``). Its network backend is wrapped in a loopback-only fence
(``LoopbackOnlyBackend``), so that were a check broken the attempt is recorded and stopped
here instead of leaving the machine: each test asserts the fence saw no attempt at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, ToolMessage

from skills.context import Actor, HttpPolicy, RunContext, ThreadRef
from skills.egress import EgressDenied, EgressPolicy, egress_client, internal_reason
from skills.spec import load_spec_text
from skills.tools import http_tool
from switchboard.settings import ConfigError, Settings
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.http_target import HttpTarget
from tests.security.conftest import CRM_TOKEN, LoopbackOnlyBackend, ScriptedResolver

REFUSED = "is not an allowed host for HTTP tools here"

SPEC = """
name: probe
description: Calls one URL.
instructions: Call it.
tools:
  - name: fetch
    description: Fetch a path.
    http:
      method: GET
      url: "${BASE}/{path}"
      headers: {Authorization: "Bearer ${TOKEN}"}
    parameters:
      path: {type: string}
"""


@pytest.fixture
def target() -> Iterator[HttpTarget]:
    with HttpTarget() as server:
        server.route("GET", "/latest", json={"ok": True})
        yield server


@pytest.fixture
def fence() -> LoopbackOnlyBackend:
    return LoopbackOnlyBackend()


class Probe:
    def __init__(self, fence: LoopbackOnlyBackend) -> None:
        self.fence = fence

    async def call(
        self,
        base: str,
        *,
        answers: dict[str, Any] | None = None,
        allowed: tuple[str, ...] = (),
        path: str = "latest",
    ) -> ToolMessage:
        spec = load_spec_text(SPEC, filename="probe.yaml", env={"BASE": base, "TOKEN": CRM_TOKEN})
        policy = HttpPolicy(allowed_hosts=allowed, resolver=ScriptedResolver(answers or {}))
        tool = http_tool(spec.http_tools[0])
        model = ScriptedChatModel([tool_call("fetch", path=path), reply("done")])
        agent = create_agent(model=model, tools=[tool], context_schema=RunContext)
        async with egress_client(policy.egress, backend=self.fence) as client:
            context = RunContext(
                run_id="r",
                skill="probe",
                thread=ThreadRef("T0", "C0", "1.0"),
                actor=Actor(user_id="U0SAM"),
                http=client,
                http_policy=policy,
            )
            result = await agent.ainvoke({"messages": [HumanMessage("go")]}, context=context)
        [message] = [m for m in result["messages"] if isinstance(m, ToolMessage)]
        return message


@pytest.fixture
def probe(fence: LoopbackOnlyBackend) -> Probe:
    return Probe(fence)


@pytest.mark.parametrize(
    "base",
    [
        "http://169.254.169.254",  # the cloud metadata server
        "http://169.254.170.2",  # ECS task metadata
        "http://[fd00:ec2::254]",  # EC2 metadata over IPv6
        "http://10.0.0.5:8080",
        "http://172.16.3.4",
        "http://192.168.1.1",
        "http://100.64.0.1",  # carrier-grade NAT
        "http://0.0.0.0:9000",
        "http://224.0.0.251",  # multicast
        "http://240.0.0.1",  # reserved
        "http://[::1]:8080",
        "http://[::]",
        "http://[fe80::1]",
        "http://[fc00::1]",
        "http://[::ffff:169.254.169.254]",  # IPv4-mapped
        "http://[::ffff:a9fe:a9fe]",  # the same, in hex
        "http://[2002:a9fe:a9fe::]",  # 6to4 around the metadata server
        "http://[64:ff9b::a9fe:a9fe]",  # NAT64 around the metadata server
        "http://[64:ff9b::10.0.0.5]",
        "http://[ff02::1]",
    ],
)
async def test_ssrf_internal_address_literals_are_refused(probe: Probe, base: str) -> None:
    message = await probe.call(base)
    assert message.status == "error"
    assert message.text.endswith(REFUSED), message.text
    assert probe.fence.attempts == []


@pytest.mark.parametrize(
    ("name", "answer"),
    [
        ("metadata.google.internal", ["169.254.169.254"]),
        ("metadata", ["169.254.169.254"]),
        ("instance-info.payco.test", ["169.254.169.254"]),
        ("db.payco.test", ["10.20.0.7"]),
        ("v6.payco.test", ["fd12:3456::7"]),
        ("mapped.payco.test", ["::ffff:10.0.0.1"]),
        ("mixed.payco.test", ["93.184.215.14", "192.168.0.10"]),
        ("app.localhost", ["93.184.215.14"]),  # *.localhost is this machine by definition
    ],
)
async def test_ssrf_names_resolving_inside_are_refused(
    probe: Probe, name: str, answer: list[str]
) -> None:
    message = await probe.call(f"http://{name}", answers={name: answer})
    assert message.status == "error"
    assert message.text.endswith(REFUSED), message.text
    assert probe.fence.attempts == []


async def test_ssrf_positive_control_allow_listed_network_is_reached(
    probe: Probe, target: HttpTarget
) -> None:
    message = await probe.call(target.base_url, allowed=("127.0.0.0/8",))
    assert message.status == "success", message.text
    assert probe.fence.attempts == [("127.0.0.1", int(target.base_url.rsplit(":", 1)[1]))]
    [request] = target.requests
    assert request.headers["authorization"] == f"Bearer {CRM_TOKEN}"


async def test_ssrf_path_arguments_cannot_climb_out_of_the_spec_path(
    probe: Probe, target: HttpTarget
) -> None:
    target.route("GET", "/a.b", json={"ok": True})
    allowed = ("127.0.0.1",)
    for path in ("..", ".", "%2e%2e", "%2E.", "%252e%252e", "a/../..", "..\\x"):
        message = await probe.call(f"{target.base_url}/latest", allowed=allowed, path=path)
        assert message.status == "error", path
        assert "may not be or contain a '.' or '..' path segment" in message.text
    assert target.requests == []
    # positive control: dots inside a segment are fine
    ok = await probe.call(target.base_url, allowed=allowed, path="a.b")
    assert ok.status == "success", ok.text
    assert [r.path for r in target.requests] == ["/a.b"]


async def test_ssrf_redirects_to_internal_addresses_are_not_followed(
    probe: Probe, target: HttpTarget
) -> None:
    target.route(
        "GET", "/latest", status=302, headers={"Location": "http://169.254.169.254/latest"}
    )
    message = await probe.call(target.base_url, allowed=("127.0.0.1",))
    assert message.status == "error"
    assert "redirected to 169.254.169.254; redirects are not followed" in message.text
    assert [r.path for r in target.requests] == ["/latest"]
    assert all(host == "127.0.0.1" for host, _ in probe.fence.attempts)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.1.2.3", "private"),
        ("100.100.100.200", "carrier-grade NAT"),  # Alibaba Cloud's metadata server
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fd00::1", "private"),
        ("::ffff:127.0.0.1", "loopback IPv4 127.0.0.1 inside IPv6"),
        ("::127.0.0.1", "loopback IPv4 127.0.0.1 inside IPv6"),
        ("2002:0a00:0001::", "private IPv4 10.0.0.1 inside IPv6"),
        ("64:ff9b::7f00:1", "loopback IPv4 127.0.0.1 inside IPv6"),
        ("64:ff9b:1::a9fe:a9fe", "link-local IPv4 169.254.169.254 inside IPv6"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),
    ],
)
def test_ssrf_address_classification(address: str, reason: str | None) -> None:
    assert internal_reason(ipaddress.ip_address(address)) == reason


async def test_ssrf_policy_decides_before_any_connection() -> None:
    resolver = ScriptedResolver({"crm.corp.test": ["10.0.0.8"]})
    policy = EgressPolicy.from_entries(["crm.corp.test"], resolver=resolver)
    assert await policy.addresses("crm.corp.test", 443) == ["10.0.0.8"]
    with pytest.raises(EgressDenied, match=r"10\.0\.0\.9 is private"):
        await EgressPolicy.from_entries(["10.0.0.8"]).addresses("10.0.0.9", 80)
    assert await EgressPolicy.from_entries(["10.0.0.0/24:80"]).addresses("10.0.0.9", 80) == [
        "10.0.0.9"
    ]
    with pytest.raises(EgressDenied):
        await EgressPolicy.from_entries(["10.0.0.0/24:80"]).addresses("10.0.0.9", 81)


@pytest.mark.parametrize(
    "value",
    ["crm.internal,*.corp.example,10.0.0.0/8,[fd00::1]:8443,fd00::/8,127.0.0.1:3000", ""],
)
def test_ssrf_allow_list_setting_accepts_hosts_addresses_and_networks(value: str) -> None:
    settings = Settings.from_env({"SWITCHBOARD_HTTP_ALLOWED_HOSTS": value})
    assert settings.http_allowed_hosts == [v for v in value.split(",") if v]


@pytest.mark.parametrize("value", ["http://crm.internal", "crm.internal:99999", "a..b", "*"])
def test_ssrf_bad_allow_list_entry_stops_start_up(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"SWITCHBOARD_HTTP_ALLOWED_HOSTS": value})
    assert str(info.value).startswith("SWITCHBOARD_HTTP_ALLOWED_HOSTS: invalid value")


async def test_ssrf_public_hosts_need_no_entry() -> None:
    resolver = ScriptedResolver({"api.stripe.test": ["93.184.215.14", "2606:2800:21f:cb07::1"]})
    policy = EgressPolicy.from_entries([], resolver=resolver)
    assert await policy.addresses("api.stripe.test", 443) == [
        "93.184.215.14",
        "2606:2800:21f:cb07::1",
    ]
