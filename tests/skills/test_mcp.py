"""MCP tool servers in skills, against a real FastMCP server in its own process.

The server (``tests/fakes/mcp_server.py``) runs over streamable HTTP on a loopback port
or over stdio; the runtime is the real one with a scripted model, so each test checks what
a user would notice: the answer, what the model was shown, what the server received.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from skills.catalog import load_registry
from skills.context import Actor, HttpPolicy, ThreadRef
from skills.mcp import McpToolbox
from skills.middleware.untrusted import CLOSE, opening
from skills.outcomes import ApprovalRequest, Decision, Reply
from skills.registry import Skill
from skills.spec import SpecValidationError, load_spec_text
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.mcp_server import CARD, McpServerProcess, read_calls, stdio_command
from tests.skills.conftest import RuntimeKit

SAM = Actor(user_id="U0SAM", name="sam")
THREAD = ThreadRef(team="T0", channel="C0SUPPORT", thread_ts="1700000000.000300")
TOKEN = "mcp-t0ken-5e4d3c2b1a"

SKILL = """\
name: crm
description: Orders over MCP.
instructions: Help the support team with orders.
mcp:
  - name: crm
    transport: {transport}
{where}
    timeout: 3
    tools:
      - lookup_order
      - big_report
      - slow
      - name: issue_refund
        approval:
          approvers: {{users: [U0CAROL]}}
"""


def http_where(url: str) -> str:
    return f'    url: "{url}"\n    headers: {{Authorization: "Bearer ${{CRM_TOKEN}}"}}'


def stdio_where(log: Path) -> str:
    return "    command: " + json.dumps(stdio_command(log))


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "crm.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def crm_skill(folder: Path, transport: str, where: str) -> Skill:
    write(folder, SKILL.format(transport=transport, where=where))
    loaded = load_registry([folder], env={"CRM_TOKEN": TOKEN}, include_python=False)
    assert not loaded.issues, loaded.issues
    return loaded.registry.get("crm")


def allow(server: McpServerProcess, **extra: object) -> HttpPolicy:
    """The loopback server is an internal address: it needs an allow-list entry."""
    return HttpPolicy(allowed_hosts=(f"127.0.0.1:{server.port}",), **extra)  # type: ignore[arg-type]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[McpServerProcess]:
    with McpServerProcess(tmp_path / "calls.jsonl") as process:
        yield process


def results(model: ScriptedChatModel) -> list[ToolMessage]:
    seen: dict[str, ToolMessage] = {}
    for call in model.calls:
        for message in call:
            if isinstance(message, ToolMessage):
                seen[message.tool_call_id] = message
    return list(seen.values())


# -- the spec ------------------------------------------------------------------------------


def test_spec_errors_name_file_line_and_field() -> None:
    text = """\
name: crm
description: CRM.
instructions: Help.
mcp:
  - name: crm
    transport: stdio
    url: http://crm.example/mcp
    tools: [lookup, lookup]
  - name: web
    transport: streamable_http
    tools: [search]
"""
    with pytest.raises(SpecValidationError) as info:
        load_spec_text(text, filename="crm.yaml", env={})
    assert [str(i) for i in info.value.issues] == [
        "crm.yaml:5 mcp[0].command: required for the stdio transport",
        "crm.yaml:7 mcp[0].url: not used by the stdio transport",
        "crm.yaml:8 mcp[0].tools[1]: duplicate tool 'lookup' (also tools[0])",
        "crm.yaml:9 mcp[1].url: required for the streamable_http transport",
    ]


def test_spec_secret_inside_an_mcp_url_is_refused() -> None:
    text = """\
name: crm
description: CRM.
instructions: Help.
mcp:
  - name: crm
    transport: sse
    url: "https://crm.example/sse?k=${CRM_TOKEN}"
    tools: [lookup]
"""
    with pytest.raises(SpecValidationError) as info:
        load_spec_text(text, filename="crm.yaml", env={"CRM_TOKEN": TOKEN})
    (issue,) = info.value.issues
    assert (issue.line, issue.field) == (7, "mcp[0].url")
    assert "${CRM_TOKEN} is expanded inside the URL" in issue.message
    assert TOKEN not in str(issue)


def test_skills_show_redacts_mcp_secrets(tmp_path: Path) -> None:
    skill = crm_skill(tmp_path, "streamable_http", http_where("http://127.0.0.1:9/mcp"))
    assert skill.spec is not None
    shown = json.dumps(skill.spec.redacted_dict()) + "\n".join(skill.spec.describe_tools())
    assert TOKEN not in shown
    assert "Bearer ${CRM_TOKEN}" in shown
    assert "mcp crm  streamable_http http://127.0.0.1:9/mcp" in shown


# -- loading the tool list -----------------------------------------------------------------


async def test_tools_load_with_the_servers_json_schemas(
    tmp_path: Path, server: McpServerProcess
) -> None:
    skill = crm_skill(tmp_path / "skills", "streamable_http", http_where(server.url))
    toolbox = McpToolbox(policy=allow(server))
    await toolbox.load([skill])

    health = toolbox.health(skill)
    assert not health.degraded, health
    tools = {t.name: convert_to_openai_tool(t)["function"] for t in toolbox.tools(skill)}
    # Only the allow-list, under the server's name; delete_everything is not offered.
    assert sorted(tools) == ["crm_big_report", "crm_issue_refund", "crm_lookup_order", "crm_slow"]
    lookup = tools["crm_lookup_order"]
    assert lookup["description"] == "Fetch an order by its numeric id."
    assert lookup["parameters"]["properties"]["order_id"]["type"] == "string"
    assert lookup["parameters"]["required"] == ["order_id"]
    assert set(toolbox.interrupts(skill)) == {"crm_issue_refund"}


async def test_a_write_tool_without_approval_is_withheld_with_file_and_line(
    tmp_path: Path, server: McpServerProcess
) -> None:
    path = write(
        tmp_path,
        f"""\
name: crm
description: CRM.
instructions: Help.
mcp:
  - name: crm
    transport: streamable_http
    url: "{server.url}"
    tools:
      - lookup_order
      - issue_refund
      - name: delete_everything
        approval: none
      - no_such_tool
""",
    )
    skill = load_registry([tmp_path], env={}, include_python=False).registry.get("crm")
    toolbox = McpToolbox(policy=allow(server))
    await toolbox.load([skill])

    health = toolbox.health(skill)
    assert health.degraded
    assert [str(i) for i in health.issues] == [
        f"{path}:10 mcp[0].tools[1].approval: required: the MCP server crm does not annotate "
        "'issue_refund' as read-only (readOnlyHint), so it may change things (add an approval "
        "block, or write `approval: none`); the tool is withheld until then",
        f"{path}:13 mcp[0].tools[3].name: the MCP server crm offers no tool 'no_such_tool' "
        "(it offers: big_report, delete_everything, issue_refund, lookup_order, slow)",
    ]
    # An explicit `approval: none` is the author's decision, as for HTTP tools.
    assert sorted(t.name for t in toolbox.tools(skill)) == [
        "crm_delete_everything",
        "crm_lookup_order",
    ]


# -- runs ------------------------------------------------------------------------------------


async def test_a_run_calls_the_tool_masked_wrapped_and_audited(
    kit: RuntimeKit,
    tmp_path: Path,
    server: McpServerProcess,
    caplog: pytest.LogCaptureFixture,
) -> None:
    skill = crm_skill(tmp_path / "skills", "streamable_http", http_where(server.url))
    model = ScriptedChatModel([tool_call("crm_lookup_order", order_id="1001"), reply("Paid.")])
    runtime = kit.runtime(
        {"offline": model},
        registry=load_registry([tmp_path / "skills"], env={"CRM_TOKEN": TOKEN}).registry,
        http_policy=allow(server),
    )
    caplog.set_level("INFO")
    outcome = await runtime.run(
        thread=THREAD, message="crm where is 1001?", actor=SAM, skill=skill.name
    )

    assert isinstance(outcome, Reply) and outcome.text == "Paid."
    assert [c["arguments"] for c in server.calls] == [{"order_id": "1001"}]
    (result,) = results(model)
    text = str(result.content)
    assert result.status == "success"
    assert text.startswith(opening("crm_lookup_order")) and text.endswith(CLOSE)
    assert '"status": "paid"' in text
    assert CARD not in text and "1111 1111 1111" not in text  # masked before the model
    assert "****1111" in text
    logs = caplog.text
    assert "mcp tool lookup_order server=crm transport=streamable_http at=127.0.0.1 -> ok" in logs
    assert TOKEN not in logs and CARD not in logs


@pytest.mark.parametrize("transport", ["streamable_http", "stdio"])
async def test_timeouts_and_result_caps_apply(
    kit: RuntimeKit, tmp_path: Path, server: McpServerProcess, transport: str
) -> None:
    log = tmp_path / "stdio-calls.jsonl"
    where = http_where(server.url) if transport != "stdio" else stdio_where(log)
    crm_skill(tmp_path / "skills", transport, where)
    model = ScriptedChatModel(
        [
            tool_call("crm_big_report", size=50_000),
            tool_call("crm_slow", seconds=6),
            reply("Done."),
        ]
    )
    runtime = kit.runtime(
        {"offline": model},
        registry=load_registry([tmp_path / "skills"], env={"CRM_TOKEN": TOKEN}).registry,
        http_policy=allow(server),
        tool_result_max_chars=1000,
    )
    outcome = await runtime.run(thread=THREAD, message="crm report", actor=SAM, skill="crm")

    assert isinstance(outcome, Reply) and outcome.text == "Done."
    big, slow = results(model)
    assert "[tool result trimmed: showing the first 1,000 of" in str(big.content)
    assert slow.status == "error"
    assert "the MCP server crm did not answer within 3 s" in str(slow.content)
    calls = read_calls(log) if transport == "stdio" else server.calls
    assert [c["tool"] for c in calls] == ["big_report", "slow"]


async def test_stdio_server_answers_a_run(kit: RuntimeKit, tmp_path: Path) -> None:
    log = tmp_path / "stdio-calls.jsonl"
    crm_skill(tmp_path / "skills", "stdio", stdio_where(log))
    model = ScriptedChatModel(
        [tool_call("crm_lookup_order", order_id="7"), reply("Order 7 is paid.")]
    )
    runtime = kit.runtime(
        {"offline": model},
        registry=load_registry([tmp_path / "skills"], env={"CRM_TOKEN": TOKEN}).registry,
    )
    outcome = await runtime.run(thread=THREAD, message="crm order 7", actor=SAM, skill="crm")
    assert isinstance(outcome, Reply) and outcome.text == "Order 7 is paid."
    assert [(c["tool"], c["arguments"]) for c in read_calls(log)] == [
        ("lookup_order", {"order_id": "7"})
    ]
    (result,) = results(model)
    assert '"id": "7"' in str(result.content)


async def test_a_gated_tool_waits_for_approval_and_runs_once(
    kit: RuntimeKit, tmp_path: Path, server: McpServerProcess
) -> None:
    crm_skill(tmp_path / "skills", "streamable_http", http_where(server.url))
    model = ScriptedChatModel(
        [tool_call("crm_issue_refund", order_id="1001", amount=25), reply("Refunded.")]
    )
    runtime = kit.runtime(
        {"offline": model},
        registry=load_registry([tmp_path / "skills"], env={"CRM_TOKEN": TOKEN}).registry,
        http_policy=allow(server),
    )
    outcome = await runtime.run(thread=THREAD, message="crm refund 25", actor=SAM, skill="crm")
    assert isinstance(outcome, ApprovalRequest)
    assert outcome.tool == "crm_issue_refund"
    assert outcome.policy.users == ("U0CAROL",)
    assert outcome.parameters_schema["properties"]["amount"]["type"] == "number"
    assert server.calls == []  # nothing ran before the decision

    decision = Decision(type="approve", interrupt_id=outcome.interrupt_id, actor="U0CAROL")
    done = await runtime.resume(thread=THREAD, decision=decision, actor=SAM)
    assert isinstance(done, Reply) and done.text == "Refunded."
    assert [c["arguments"] for c in server.calls] == [{"order_id": "1001", "amount": 25}]


async def test_unreachable_server_degrades_the_skill_and_the_turn_gets_a_tool_error(
    kit: RuntimeKit, tmp_path: Path
) -> None:
    down = McpServerProcess(tmp_path / "calls.jsonl")  # never started: nothing listens
    crm_skill(tmp_path / "skills", "streamable_http", http_where(down.url))
    model = ScriptedChatModel(
        [tool_call("crm_lookup_order", order_id="1001"), reply("The CRM is unavailable.")]
    )
    runtime = kit.runtime(
        {"offline": model},
        registry=load_registry([tmp_path / "skills"], env={"CRM_TOKEN": TOKEN}).registry,
        http_policy=allow(down),
    )
    await runtime.mcp.load(runtime.registry)
    health = runtime.mcp.health(runtime.registry.get("crm"))
    assert health.degraded
    assert health.summary() == "mcp crm unreachable (ConnectError)"

    outcome = await runtime.run(thread=THREAD, message="crm 1001?", actor=SAM, skill="crm")
    assert isinstance(outcome, Reply) and outcome.text == "The CRM is unavailable."
    (result,) = results(model)
    assert result.status == "error"
    assert "crm_lookup_order is unavailable: the MCP server crm could not be reached" in str(
        result.content
    )


async def test_a_server_that_comes_back_is_used_again(kit: RuntimeKit, tmp_path: Path) -> None:
    server = McpServerProcess(tmp_path / "calls.jsonl")
    crm_skill(tmp_path / "skills", "streamable_http", http_where(server.url))
    now = [0.0]
    toolbox = McpToolbox(policy=allow(server), retry_after=30, clock=lambda: now[0])
    model = ScriptedChatModel(
        [reply("down"), tool_call("crm_lookup_order", order_id="9"), reply("Order 9 is paid.")]
    )
    runtime = kit.runtime(
        {"offline": model},
        registry=load_registry([tmp_path / "skills"], env={"CRM_TOKEN": TOKEN}).registry,
        http_policy=allow(server),
        mcp=toolbox,
    )
    await toolbox.load(runtime.registry)
    assert toolbox.health(runtime.registry.get("crm")).degraded
    await runtime.run(thread=THREAD, message="crm hi", actor=SAM, skill="crm")

    with server:
        now[0] = 31.0  # the retry is due
        outcome = await runtime.run(thread=THREAD, message="crm 9?", actor=SAM, skill="crm")
    assert isinstance(outcome, Reply) and outcome.text == "Order 9 is paid."
    assert not toolbox.health(runtime.registry.get("crm")).degraded
    assert [c["arguments"] for c in server.calls] == [{"order_id": "9"}]


def test_skills_list_marks_a_skill_with_an_unreachable_server_degraded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from switchboard.cli import app

    down = McpServerProcess(tmp_path / "calls.jsonl")  # nothing listens on its port
    crm_skill(tmp_path / "skills", "streamable_http", http_where(down.url))
    monkeypatch.setenv("SWITCHBOARD_SKILLS_DIR", str(tmp_path / "skills"))
    monkeypatch.setenv("SWITCHBOARD_HTTP_ALLOWED_HOSTS", f"127.0.0.1:{down.port}")
    monkeypatch.setenv("CRM_TOKEN", TOKEN)
    result = CliRunner().invoke(app, ["skills", "list"])
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("crm ")]
    assert line.endswith("[degraded: mcp crm unreachable (ConnectError)]")
    refunds = next(line for line in result.output.splitlines() if line.startswith("refunds"))
    assert "degraded" not in refunds


def test_skills_list_healthy_server_is_not_degraded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: McpServerProcess
) -> None:
    from typer.testing import CliRunner

    from switchboard.cli import app

    crm_skill(tmp_path / "skills", "streamable_http", http_where(server.url))
    monkeypatch.setenv("SWITCHBOARD_SKILLS_DIR", str(tmp_path / "skills"))
    monkeypatch.setenv("SWITCHBOARD_HTTP_ALLOWED_HOSTS", f"127.0.0.1:{server.port}")
    monkeypatch.setenv("CRM_TOKEN", TOKEN)
    result = CliRunner().invoke(app, ["skills", "list"])
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("crm ")]
    assert "degraded" not in line and "Orders over MCP." in line
