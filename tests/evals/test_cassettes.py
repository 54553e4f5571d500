"""Cassettes, as a team uses them: record a real (OpenAI-compatible) provider with
``switchboard eval run --record``, replay it offline with ``--replay``, and see a prompt
change miss the cassette with a message naming the case.

The provider is the local OpenAI-compatible fake, reached over real HTTP from a real
``switchboard`` process; the replay runs with no provider configured at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from switchboard.openai_fake import FakeOpenAIServer, RecordedRequest, Reply

# Each step is a whole `switchboard` process (imports dominate): generous on a loaded machine.
pytestmark = pytest.mark.timeout(600)

SKILL = """\
name: orders
description: Look up customer orders by their id and say where they stand.
instructions: |
  You look up orders for the support team. Quote the order's status.
tools:
  - name: lookup_order
    description: Fetch an order by id.
    http:
      method: GET
      url: "${CRM_URL}/orders/{order_id}"
    parameters:
      order_id: {type: string, pattern: "^[0-9]+$"}
"""

DATASET = """\
skill: orders
http:
  CRM_URL:
    - {method: GET, path: /orders/1001, json: {id: "1001", status: paid, total: 80}}
cases:
  - id: lookup
    message: where is order 1001? the customer's card is 4111 1111 1111 1111
    expect:
      trajectory: [{name: lookup_order, args: {order_id: "1001"}}]
      answer: {contains: ["paid"], no_pii: true}
"""


def provider(request: RecordedRequest) -> Reply:
    """A model that routes to `orders`, looks the order up, then answers from the result."""
    body = request.body
    if body.get("response_format") or "_Choice" in request.tool_names:
        if "_Choice" in request.tool_names:
            return Reply.tool("_Choice", skill="orders")
        return Reply.text(json.dumps({"skill": "orders"}))
    last = request.messages[-1]
    if last.get("role") == "tool":
        return Reply.text("Order 1001 is paid (80 EUR).")
    return Reply.tool("lookup_order", order_id="1001")


def switchboard(
    args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from switchboard.cli import main; main()", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_record_then_replay_then_a_changed_prompt_misses(tmp_path: Path) -> None:
    skills = tmp_path / "skills"
    skills.mkdir()
    (skills / "orders.yaml").write_text(SKILL)
    data = tmp_path / "evals" / "orders.eval.yaml"
    data.parent.mkdir()
    data.write_text(textwrap.dedent(DATASET))
    base = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.environ.get("PYTHONPATH", str(Path(__file__).parents[2])),
        "HOME": str(tmp_path),
        "SWITCHBOARD_SKILLS_DIR": str(skills),
    }
    cassette = data.parent / "cassettes" / "orders.cassette.json"

    with FakeOpenAIServer(default=provider) as server:
        recorded = switchboard(
            ["eval", "run", "--record", "--model", "openai:gpt-fake", "--dataset", str(data),
             "--out", str(tmp_path / "recorded")],
            {**base, "OPENAI_BASE_URL": server.base_url},
            tmp_path,
        )  # fmt: skip
        assert recorded.returncode == 0, recorded.stdout + recorded.stderr
        assert "quality mode" in recorded.stdout and f"cassette written: {cassette}" in (
            recorded.stdout.replace("\n", "")
        )
        sent = len(server.requests)
        assert sent == 3  # router, tool call, answer
        # what reached the provider was masked, and so is what the cassette holds
        assert all("4111 1111 1111 1111" not in json.dumps(r.body) for r in server.requests)
        stored = cassette.read_text()
        assert "4111 1111 1111 1111" not in stored
        assert list(json.loads(stored)["cases"]) == ["orders/lookup"]

        # replay: no provider configured, nothing sent, same verdict
        replayed = switchboard(
            [
                "eval",
                "run",
                "--replay",
                "--dataset",
                str(data),
                "--out",
                str(tmp_path / "r"),
            ],
            base,
            tmp_path,
        )
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert len(server.requests) == sent
        assert "wiring mode (recorded cassette" in replayed.stdout.replace("\n", " ")
        results = json.loads((tmp_path / "r" / "results.json").read_text())
        assert results["mode"] == "wiring" and results["source"] == "cassette"
        assert results["cases"][0]["passed"] and results["cases"][0]["mode"] == "wiring:cassette"
        recorded_json = json.loads((tmp_path / "recorded" / "results.json").read_text())
        assert recorded_json["mode"] == "quality"
        assert (
            results["cases"][0]["attempts"][0]["answer"]
            == (recorded_json["cases"][0]["attempts"][0]["answer"])
        )

        # a prompt change since the recording: the case fails, naming itself and the cause
        (skills / "orders.yaml").write_text(SKILL.replace("Quote the order's status.", "Be brief."))
        missed = switchboard(
            ["eval", "run", "--replay", "--dataset", str(data), "--out", str(tmp_path / "missed")],
            base,
            tmp_path,
        )
        assert len(server.requests) == sent  # still nothing sent anywhere
    output = " ".join(missed.stdout.split())
    assert missed.returncode == 1, output
    assert "FAILED: orders/lookup" in output
    assert "orders/lookup: model request #" in output and "is not in" in output
    assert "re-record with `switchboard eval run --record`" in output
    assert "Be brief." in output  # the first difference is shown


def test_replay_without_a_cassette_is_a_usage_error(tmp_path: Path) -> None:
    data = tmp_path / "ask.eval.yaml"
    data.write_text("skill: ask\ncases:\n  - {id: a, message: hello}\n")
    result = switchboard(
        ["eval", "run", "--replay", "--dataset", str(data), "--out", str(tmp_path / "o")],
        {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
         "HOME": str(tmp_path)},
        tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no cassette; record one with `switchboard eval run --record`" in result.stderr
