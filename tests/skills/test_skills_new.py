"""``switchboard skills new``: interactive and by flags, validated, never overwriting."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from evals.dataset import load_dataset
from skills.catalog import load_registry
from skills.spec import load_spec_file
from switchboard.cli import app


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SWITCHBOARD_SKILLS_DIR", raising=False)
    monkeypatch.delenv("CRM_URL", raising=False)
    monkeypatch.chdir(tmp_path)


FLAGS = [
    "skills",
    "new",
    "--name",
    "orders",
    "--description",
    "Look up customer orders and cancel them after approval.",
    "--tool",
    "slack.read_thread",
    "--tool",
    "http:lookup_order:GET:${CRM_URL:-http://127.0.0.1:8787}/orders/{order_id}",
    "--tool",
    "http:cancel_order:POST:${CRM_URL:-http://127.0.0.1:8787}/orders/{order_id}/cancel:reason",
    "--approval",
    "U0CAROL,S0LEADS",
    "--quorum",
    "2",
    "--channel",
    "C0SUPPORT",
    "--example",
    "Where is order 1001? The customer says it never arrived.",
    "--yes",
]


def test_flags_write_a_valid_spec_and_a_natural_starter_dataset(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [*FLAGS, "--dir", str(tmp_path / "team")])
    assert result.exit_code == 0, result.output
    spec_path, dataset_path = tmp_path / "team/orders.yaml", tmp_path / "team/orders.eval.yaml"
    assert f"wrote {spec_path}" in result.output
    assert "export SWITCHBOARD_SKILLS_DIR=" in result.output  # the folder is not configured

    spec = load_spec_file(spec_path, env={})
    assert spec.version == "1"
    assert spec.access.channels == ["C0SUPPORT"]
    assert spec.builtin_tools == ["slack.read_thread"]
    cancel = spec.tool("cancel_order")
    assert cancel is not None and cancel.http.method == "POST"
    policy = cancel.approval_policy
    assert policy is not None and policy.quorum == 2
    assert policy.approvers.users == ["U0CAROL"] and policy.approvers.usergroups == ["S0LEADS"]
    assert set(cancel.parameters) == {"order_id", "reason"}
    assert "{order_id}" in (tmp_path / "team/orders.yaml").read_text()

    dataset = load_dataset(dataset_path)
    assert dataset.skill == "orders" and len(dataset.cases) == 3
    for case in dataset.cases:
        # words a person types: no "<skill> <tool> key=value" command syntax
        assert "=" not in case.message and not case.message.startswith("orders ")
        assert case.message[0].isupper()
    routed, uses_tool, pii = dataset.cases
    assert routed.message == "Where is order 1001? The customer says it never arrived."
    assert routed.expect.route == "orders" and routed.skill is None
    assert uses_tool.skill == "orders"
    assert uses_tool.expect.trajectory is not None
    assert [c.name for c in uses_tool.expect.trajectory.calls] == ["lookup_order"]
    assert pii.expect.answer.no_pii and "4111 1111 1111 1111" in pii.message

    # the folder loads as a deployment would load it
    loaded = load_registry([tmp_path / "team"], env={})
    assert not loaded.issues and "orders" in loaded.registry


def test_default_folder_is_the_first_skills_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHBOARD_SKILLS_DIR", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    result = CliRunner().invoke(app, FLAGS)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a/orders.yaml").is_file() and not (tmp_path / "b").exists()
    assert "export SWITCHBOARD_SKILLS_DIR" not in result.output


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "skills").mkdir()
    (tmp_path / "skills/orders.eval.yaml").write_text("keep me\n")
    result = CliRunner().invoke(app, FLAGS)
    assert result.exit_code == 2
    assert "orders.eval.yaml already exists; not overwriting it" in result.output
    assert (tmp_path / "skills/orders.eval.yaml").read_text() == "keep me\n"
    assert not (tmp_path / "skills/orders.yaml").exists()  # nothing half-written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "Orders!"], "name 'Orders!': lowercase letters"),
        (["--name", "ask"], "there is already a skill named 'ask'"),
        (["--tool", "http:pay:POST:https://pay.example/charge"], "needs approvers"),
        (["--tool", "http:get:GET:${CRM_BASE}/x"], "orders.yaml:"),  # file:line of the spec
        (["--tool", "kafka:topic"], "expected a built-in tool"),
        (["--tool", "mcp:crm:https://mcp.example/mcp"], "name the tools the model may use"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    base = ["skills", "new", "--name", "orders", "--description", "Orders.", "--yes"]
    result = CliRunner().invoke(app, [*base, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "skills").exists() or not any((tmp_path / "skills").iterdir())


def test_unset_variable_names_it_with_file_and_line(tmp_path: Path) -> None:
    base = ["skills", "new", "--name", "orders", "--description", "Orders.", "--yes"]
    result = CliRunner().invoke(app, [*base, "--tool", "http:get:GET:${CRM_BASE}/x"])
    assert result.exit_code == 2
    assert "environment variable CRM_BASE is not set" in result.output


def test_yes_without_name_says_which_flags(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["skills", "new", "--yes"])
    assert result.exit_code == 2
    assert "with --yes, give --name and --description" in result.output


def test_interactive_prompts_build_the_same_kind_of_skill(tmp_path: Path) -> None:
    answers = "\n".join(
        [
            "Bad Name",  # rejected, asked again
            "ask",  # taken, asked again
            "payouts",
            "Check merchant payouts and retry failed ones after approval.",
            "builtin",
            "time.now",
            "http",
            "get_payout",
            "Fetch a payout by its id.",
            "GET",
            "https://payouts.example/payouts/{payout_id}",
            "http",
            "retry_payout",
            "Retry a failed payout.",
            "POST",
            "https://payouts.example/payouts/{payout_id}/retry",
            "note",
            "mcp",
            "ledger",
            "https://ledger.example/mcp",
            "balance, history",
            "done",
            "U0CAROL, S0LEADS",  # approvers
            "1",  # quorum
            "C0PAYMENTS",  # channels
            "",  # user groups
            "",  # users
            "Why didn't Bluebird Cafe get paid on Monday?",
            "y",
        ]
    )
    result = CliRunner().invoke(app, ["skills", "new"], input=answers + "\n")
    assert result.exit_code == 0, result.output
    assert "'Bad Name' is not a valid name" in result.output
    assert "'ask' is taken" in result.output

    spec = load_spec_file(tmp_path / "skills/payouts.yaml", env={})
    assert [t.name for t in spec.http_tools] == ["get_payout", "retry_payout"]
    retry = spec.tool("retry_payout")
    assert retry is not None and retry.approval_policy is not None
    assert spec.access.channels == ["C0PAYMENTS"]
    assert spec.builtin_tools == ["time.now"]
    [server] = spec.mcp
    assert server.name == "ledger" and [t.name for t in server.tools] == ["balance", "history"]
    assert all(t.approval_policy is not None for t in server.tools)  # MCP tools may write

    dataset = load_dataset(tmp_path / "skills/payouts.eval.yaml")
    assert dataset.cases[0].message == "Why didn't Bluebird Cafe get paid on Monday?"
    assert dataset.cases[1].expect.trajectory is not None
    assert dataset.cases[1].expect.trajectory.calls[0].name == "get_payout"
    assert "payout id is 1001" in dataset.cases[1].message


def test_interactive_no_at_the_end_writes_nothing(tmp_path: Path) -> None:
    answers = "\n".join(["notes", "Answer questions about notes.", "done", "", "", "", "", "n"])
    result = CliRunner().invoke(app, ["skills", "new"], input=answers + "\n")
    assert result.exit_code == 1
    assert "nothing written" in result.output
    assert not (tmp_path / "skills").exists()
