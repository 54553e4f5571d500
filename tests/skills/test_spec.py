"""Skill spec loading, validation messages (file:line field) and HTTP request rendering."""

from __future__ import annotations

import json
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from skills.spec import (
    ApprovalPolicy,
    HttpToolSpec,
    SkillSpec,
    SpecIssue,
    SpecValidationError,
    ToolArgumentsError,
    builtin_dir,
    format_duration,
    load_spec_dirs,
    load_spec_file,
    load_spec_text,
    parse_duration,
    render_request,
    validate_paths,
)

DATA = Path(__file__).parent / "data"

# Line numbers in the tests below count from the first line of each YAML text.
HEADER = """\
name: refunds
description: Refund orders.
instructions: Be careful.
"""


def load(body: str, env: dict[str, str] | None = None) -> SkillSpec:
    return load_spec_text(HEADER + textwrap.dedent(body), filename="refunds.yaml", env=env or {})


def issues_of(
    body: str, env: dict[str, str] | None = None, *, header: str = HEADER
) -> list[SpecIssue]:
    text = header + textwrap.dedent(body)
    with pytest.raises(SpecValidationError) as caught:
        load_spec_text(text, filename="refunds.yaml", env=env or {})
    assert all(issue.file == "refunds.yaml" for issue in caught.value.issues)
    return caught.value.issues


def only_issue(body: str, env: dict[str, str] | None = None, *, header: str = HEADER) -> SpecIssue:
    issues = issues_of(body, env, header=header)
    assert len(issues) == 1, [str(i) for i in issues]
    return issues[0]


def http_tool(spec: SkillSpec, name: str) -> HttpToolSpec:
    tool = spec.tool(name)
    assert tool is not None
    return tool


REFUND_TOOLS = """\
tools:
  - use: slack.read_thread
  - name: lookup_order
    description: Fetch an order.
    http:
      method: GET
      url: "${CRM_URL}/orders/{order_id}"
      headers: {Authorization: "Bearer ${CRM_TOKEN}"}
    parameters:
      order_id: {type: string}
  - name: issue_refund
    description: Refund an order.
    http:
      method: POST
      url: "${CRM_URL}/refunds"
      headers: {Authorization: "Bearer ${CRM_TOKEN}", X-Team: payments}
      json: {order_id: "{order_id}", amount: "{amount}", note: "refund-{order_id}"}
    parameters:
      order_id: {type: string}
      amount: {type: number, minimum: 0, maximum: 5000}
    approval:
      approvers: {users: [U0CAROL], usergroups: [S0LEADS]}
      expires_in: 4h
"""
CRM_ENV = {"CRM_URL": "https://crm.example.com/api", "CRM_TOKEN": "s3cr3t-t0ken"}


# --------------------------------------------------------------------------- valid specs


def test_contract_example_loads_with_defaults() -> None:
    spec = load(REFUND_TOOLS, CRM_ENV)

    assert spec.name == "refunds"
    assert spec.builtin_tools == ["slack.read_thread"]
    assert spec.memory.ttl == timedelta(days=7)
    assert spec.access.channels == []
    lookup, refund = http_tool(spec, "lookup_order"), http_tool(spec, "issue_refund")
    assert lookup.approval is None and not lookup.is_write
    assert lookup.required_parameters == ["order_id"]
    assert refund.is_write
    policy = refund.approval_policy
    assert isinstance(policy, ApprovalPolicy)
    assert (policy.quorum, policy.four_eyes, policy.allow_edit) == (1, True, False)
    assert policy.expires_in == timedelta(hours=4)


def test_approval_none_is_accepted_for_write_tools() -> None:
    spec = load(
        """\
        tools:
          - name: ping
            description: Poke the service.
            http: {method: DELETE, url: "https://svc.example.com/cache"}
            approval: none
        """
    )
    tool = http_tool(spec, "ping")
    assert tool.approval == "none"
    assert tool.approval_policy is None


def test_builtins_load_with_an_empty_environment() -> None:
    result = load_spec_dirs([], env={})

    assert result.issues == []
    assert set(result.specs) == {"ask", "summarize", "refunds"}
    assert set(result.specs["ask"].builtin_tools) == {
        "slack.read_thread",
        "slack.read_channel",
        "slack.user_info",
        "time.now",
    }
    assert result.specs["summarize"].builtin_tools == ["slack.read_thread", "slack.read_channel"]
    refunds = result.specs["refunds"]
    assert refunds.source == builtin_dir() / "refunds.yaml"
    assert http_tool(refunds, "issue_refund").approval_policy is not None
    lookup = render_request(http_tool(refunds, "lookup_order"), {"order_id": "42"})
    assert lookup.url == "http://127.0.0.1:8787/orders/42"


def test_builtin_refunds_reads_crm_settings_from_env() -> None:
    spec = load_spec_file(builtin_dir() / "refunds.yaml", env=CRM_ENV)

    request = render_request(http_tool(spec, "issue_refund"), {"order_id": "42", "amount": 19.5})
    assert request.url == "https://crm.example.com/api/refunds"
    assert request.headers["Authorization"] == "Bearer s3cr3t-t0ken"
    assert request.json == {"order_id": "42", "amount": 19.5}  # optional reason left out


# --------------------------------------------------------------------------- one error each


def test_bad_skill_name() -> None:
    issue = only_issue("", header="name: Refunds!\ndescription: d\ninstructions: i\n")
    assert (issue.line, issue.field) == (1, "name")
    assert "not a valid skill name" in issue.message


def test_unknown_key_is_reported_with_a_suggestion() -> None:
    issue = only_issue(
        """\
        tools:
          - name: lookup
            description: Look up.
            http: {method: GET, url: "https://crm.example.com"}
            aproval: none
        """
    )
    assert (issue.line, issue.field) == (8, "tools[0].aproval")
    assert issue.message == "unknown key (did you mean 'approval'?)"


def test_write_tool_without_approval() -> None:
    issue = only_issue(
        REFUND_TOOLS.replace("approval:", "x_approval:").split("    x_approval")[0], CRM_ENV
    )
    assert (issue.line, issue.field) == (14, "tools[2].approval")
    assert str(issue) == (
        "refunds.yaml:14 tools[2].approval: required for POST tools (or write `approval: none`)"
    )


def test_approval_must_be_none_or_a_policy() -> None:
    issue = only_issue(
        """\
        tools:
          - name: wipe
            description: Wipe.
            http: {method: DELETE, url: "https://svc.example.com"}
            approval: nobody
        """
    )
    assert (issue.line, issue.field) == (8, "tools[0].approval")


def test_quorum_must_be_at_least_one() -> None:
    issue = only_issue(REFUND_TOOLS.replace("expires_in: 4h", "quorum: 0"), CRM_ENV)
    assert (issue.line, issue.field) == (26, "tools[2].approval.quorum")
    assert issue.message == "must be at least 1, got 0"


def test_quorum_larger_than_the_approver_list() -> None:
    body = REFUND_TOOLS.replace(", usergroups: [S0LEADS]", "").replace(
        "expires_in: 4h", "quorum: 2"
    )
    issue = only_issue(body, CRM_ENV)
    assert (issue.line, issue.field) == (26, "tools[2].approval.quorum")
    assert "unreachable" in issue.message


def test_approvers_cannot_be_empty() -> None:
    body = REFUND_TOOLS.replace("{users: [U0CAROL], usergroups: [S0LEADS]}", "{users: []}")
    issue = only_issue(body, CRM_ENV)
    assert (issue.line, issue.field) == (25, "tools[2].approval.approvers")


@pytest.mark.parametrize(
    ("body", "line", "field"),
    [
        ("memory: {ttl: 7 days}\n", 4, "memory.ttl"),
        ("memory: {ttl: 0s}\n", 4, "memory.ttl"),
        ("memory: {ttl: 3600}\n", 4, "memory.ttl"),
    ],
)
def test_bad_duration(body: str, line: int, field: str) -> None:
    issue = only_issue(body)
    assert (issue.line, issue.field) == (line, field)


def test_bad_duration_in_approval() -> None:
    issue = only_issue(REFUND_TOOLS.replace("expires_in: 4h", "expires_in: 4 hours"), CRM_ENV)
    assert (issue.line, issue.field) == (26, "tools[2].approval.expires_in")
    assert "expected a duration like 7d" in issue.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("4h", timedelta(hours=4)),
        ("30m", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(minutes=90)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


def test_unknown_builtin_tool() -> None:
    issue = only_issue("tools:\n  - use: slack.read_thred\n")
    assert (issue.line, issue.field) == (5, "tools[0].use")
    assert "did you mean 'slack.read_thread'" in issue.message


def test_duplicate_tool_names() -> None:
    issue = only_issue(
        """\
        tools:
          - name: lookup
            description: One.
            http: {method: GET, url: "https://a.example.com"}
          - name: lookup
            description: Two.
            http: {method: GET, url: "https://b.example.com"}
        """
    )
    assert (issue.line, issue.field) == (8, "tools[1].name")
    assert "duplicate tool 'lookup'" in issue.message


def test_duplicate_tool_names_reported_alongside_other_errors() -> None:
    issues = issues_of(
        """\
        tools:
          - use: time.now
          - use: time.now
          - name: broken
            description: No http block.
        """
    )
    assert [(i.line, i.field) for i in issues] == [(6, "tools[1].use"), (7, "tools[2].http")]


def test_missing_env_var_names_variable_file_line_and_field() -> None:
    issues = issues_of(REFUND_TOOLS, {"CRM_TOKEN": "t"})  # CRM_URL unset, used twice

    assert [str(i) for i in issues] == [
        "refunds.yaml:10 tools[1].http.url: environment variable CRM_URL is not set",
        "refunds.yaml:18 tools[2].http.url: environment variable CRM_URL is not set",
    ]


def test_undeclared_placeholder() -> None:
    body = REFUND_TOOLS.replace('note: "refund-{order_id}"', 'note: "refund-{ticket}"')
    issue = only_issue(body, CRM_ENV)
    assert (issue.line, issue.field) == (20, "tools[2].http.json.note")
    assert issue.message.startswith("placeholder {ticket} is not a declared parameter")


def test_unbalanced_brace_in_template() -> None:
    body = REFUND_TOOLS.replace("/orders/{order_id}", "/orders/{order_id")
    issue = only_issue(body, CRM_ENV)
    assert (issue.line, issue.field) == (10, "tools[1].http.url")
    assert "unmatched '{'" in issue.message


def test_invalid_json_schema_in_parameters() -> None:
    body = REFUND_TOOLS.replace("{type: number, minimum: 0", "{type: numbr, minimum: 0")
    issue = only_issue(body, CRM_ENV)
    assert (issue.line, issue.field) == (23, "tools[2].parameters.amount")
    assert issue.message.startswith("invalid JSON Schema at type:")


def test_required_must_name_declared_parameters() -> None:
    body = REFUND_TOOLS.replace(
        "    approval:\n", "    required: [order_id, amout]\n    approval:\n"
    )
    issue = only_issue(body, CRM_ENV)
    assert (issue.line, issue.field) == (24, "tools[2].required[1]")


def test_yaml_syntax_error_has_its_line() -> None:
    issue = only_issue("tools:\n  - use: time.now\n  - name: [unclosed\nmemory: {}\n")
    assert issue.line == 7
    assert issue.field == ""
    assert issue.message.startswith("invalid YAML:")
    assert str(issue).startswith("refunds.yaml:7: invalid YAML:")


def test_duplicate_yaml_key() -> None:
    issue = only_issue("memory: {ttl: 1d}\nmemory: {ttl: 2d}\n")
    assert (issue.line, issue.field) == (5, "memory")
    assert issue.message == "duplicate key 'memory'"


def test_document_must_be_a_mapping() -> None:
    issue = only_issue("", header="- just\n- a list\n")
    assert issue.line == 1


def test_missing_required_keys_point_at_their_parent() -> None:
    issue = only_issue("tools:\n  - name: t\n    description: d\n")
    assert (issue.line, issue.field, issue.message) == (5, "tools[0].http", "required")


def test_all_errors_of_a_file_are_collected() -> None:
    issues = issues_of(
        """\
        model: 42
        access: {channels: [C1], groups: [S1]}
        tools:
          - use: nope.tool
          - name: Bad-Name
            description: x
            http: {method: FETCH, url: "https://a.example.com"}
        """
    )
    assert [(i.line, i.field) for i in issues] == [
        (4, "model"),
        (5, "access.groups"),
        (7, "tools[0].use"),
        (8, "tools[1].name"),
        (10, "tools[1].http.method"),
    ]
    assert issues[0].message == "expected a string (got 42)"


def test_duplicate_skill_across_two_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(HEADER)
    (tmp_path / "b.yaml").write_text("# copy\n" + HEADER)

    result = load_spec_dirs([tmp_path], env={}, include_builtin=False)

    assert list(result.specs) == ["refunds"]
    assert result.specs["refunds"].source == tmp_path / "a.yaml"
    [issue] = result.issues
    assert (issue.file, issue.line, issue.field) == (str(tmp_path / "b.yaml"), 2, "name")
    assert f"already defined in {tmp_path / 'a.yaml'}:1" in issue.message


def test_user_skill_may_not_shadow_a_builtin(tmp_path: Path) -> None:
    (tmp_path / "ask.yaml").write_text("name: ask\ndescription: d\ninstructions: i\n")

    result = load_spec_dirs([tmp_path], env={})

    [issue] = result.issues
    assert issue.file == str(tmp_path / "ask.yaml")
    assert str(builtin_dir() / "ask.yaml") in issue.message
    assert result.specs["ask"].source == builtin_dir() / "ask.yaml"


# --------------------------------------------------------------------------- ${ENV}


def test_env_defaults_and_escapes() -> None:
    spec = load(
        """\
        tools:
          - name: search
            description: Search.
            http:
              method: GET
              url: "${BASE:-http://127.0.0.1:8787}/search/{q}"
              headers: {X-Empty: "${EMPTY:-}", X-Literal: "$${NOT_ENV}"}
              query: {region: "${REGION:-eu}"}
            parameters:
              q: {type: string}
        """,
        {"REGION": "", "EMPTY": "ignored-when-set"},
    )
    request = render_request(http_tool(spec, "search"), {"q": "x"})

    assert request.url == "http://127.0.0.1:8787/search/x"
    assert request.headers == {"X-Empty": "ignored-when-set", "X-Literal": "${NOT_ENV}"}
    assert request.params == {"region": "eu"}  # set-but-empty falls back, as in the shell


def test_env_values_are_never_read_as_placeholders() -> None:
    spec = load(
        """\
        tools:
          - name: t
            description: t
            http: {method: GET, url: "https://a.example.com/", headers: {X-Key: "${KEY}"}}
        """,
        {"KEY": "{not_a_param}"},
    )
    assert render_request(http_tool(spec, "t"), {}).headers == {"X-Key": "{not_a_param}"}


def test_model_visible_text_is_not_expanded() -> None:
    spec = load_spec_text(
        "name: n\ndescription: uses ${HOME}\ninstructions: run `echo ${HOME}`\n",
        filename="n.yaml",
        env={"HOME": "/root"},
    )
    assert spec.description == "uses ${HOME}"
    assert spec.instructions == "run `echo ${HOME}`"


def test_os_environ_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_URL", "https://from-os.example.com")
    monkeypatch.setenv("CRM_TOKEN", "t")
    issues = issues_of(REFUND_TOOLS, {"CRM_TOKEN": "t"})
    assert all("CRM_URL is not set" in i.message for i in issues)


# --------------------------------------------------------------------------- secrets


def test_secrets_from_env_never_show() -> None:
    spec = load(REFUND_TOOLS, CRM_ENV)
    refund = http_tool(spec, "issue_refund")
    request = render_request(refund, {"order_id": "1", "amount": 5})

    shown = [
        *spec.describe_tools(),
        repr(spec),
        str(spec),
        repr(refund),
        json.dumps(spec.redacted_dict()),
        repr(request),
    ]
    for text in shown:
        assert "s3cr3t-t0ken" not in text
    assert request.headers["Authorization"] == "Bearer s3cr3t-t0ken"
    redacted = spec.redacted_dict()["tools"][2]["http"]
    assert redacted["headers"] == {"Authorization": "Bearer ${CRM_TOKEN}", "X-Team": "payments"}
    assert refund.display_url() == "${CRM_URL}/refunds"
    assert spec.describe_tools()[2] == (
        "issue_refund  POST ${CRM_URL}/refunds  approval: 1 of U0CAROL, S0LEADS, expires in 4 hours"
    )
    assert spec.redacted_dict()["tools"][2]["approval"]["expires_in"] == "4h"


def test_literal_secrets_in_sensitive_headers_are_hidden() -> None:
    spec = load(
        """\
        tools:
          - name: t
            description: t
            http:
              method: GET
              url: "https://a.example.com/"
              headers: {X-Api-Key: hardcoded-key, Accept: application/json}
        """
    )
    shown = http_tool(spec, "t").redacted_dict()["http"]["headers"]
    assert shown == {"X-Api-Key": "<redacted>", "Accept": "application/json"}
    assert "hardcoded-key" not in repr(spec)


# --------------------------------------------------------------------------- rendering


def test_url_placeholders_are_percent_encoded() -> None:
    spec = load(REFUND_TOOLS, CRM_ENV)
    request = render_request(http_tool(spec, "lookup_order"), {"order_id": "a/b c"})

    assert request.method == "GET"
    assert request.url == "https://crm.example.com/api/orders/a%2Fb%20c"
    assert request.json is None


def test_json_body_keeps_argument_types() -> None:
    spec = load(REFUND_TOOLS, CRM_ENV)
    request = render_request(http_tool(spec, "issue_refund"), {"order_id": "42", "amount": 12.5})

    assert request.json == {"order_id": "42", "amount": 12.5, "note": "refund-42"}
    assert request.method == "POST"


def test_braces_escape_and_optional_arguments() -> None:
    spec = load(
        """\
        tools:
          - name: post
            description: Post.
            http:
              method: POST
              url: "https://a.example.com/items"
              json:
                text: "{{literal}} {title}"
                tags: ["{tag}", fixed]
                count: "{count}"
                flag: "{flag}"
              query: {limit: "{count}"}
            parameters:
              title: {type: string}
              tag: {type: string}
              count: {type: integer, default: 10}
              flag: {type: boolean}
            required: [title]
            approval: none
        """
    )
    tool = http_tool(spec, "post")
    request = render_request(tool, {"title": "hi", "flag": False})

    assert request.json == {"text": "{literal} hi", "tags": ["fixed"], "count": 10, "flag": False}
    assert request.params == {"limit": "10"}


def test_arguments_are_validated_against_the_schema() -> None:
    tool = http_tool(load(REFUND_TOOLS, CRM_ENV), "issue_refund")

    with pytest.raises(ToolArgumentsError) as too_much:
        render_request(tool, {"order_id": "42", "amount": 6000})
    assert "amount: 6000 is greater than the maximum of 5000" in str(too_much.value)

    with pytest.raises(ToolArgumentsError) as missing:
        render_request(tool, {"amount": "5", "extra": 1})
    problems = " | ".join(missing.value.problems)
    assert "'order_id' is a required property" in problems
    assert "'extra' was unexpected" in problems
    assert "amount: '5' is not of type 'number'" in problems


def test_line_breaks_cannot_be_smuggled_into_headers() -> None:
    spec = load(
        """\
        tools:
          - name: t
            description: t
            http: {method: GET, url: "https://a.example.com/", headers: {X-User: "{user}"}}
            parameters: {user: {type: string}}
        """
    )
    with pytest.raises(ToolArgumentsError, match="line breaks"):
        render_request(http_tool(spec, "t"), {"user": "bob\r\nX-Admin: yes"})


# --------------------------------------------------------------------------- validate_paths


def test_validate_paths_reports_every_error_of_every_file() -> None:
    issues = validate_paths([DATA / "several", DATA / "missing.yaml"], env={})

    rendered = sorted(str(issue) for issue in issues)
    several = DATA / "several"
    assert rendered == sorted(
        [
            f"{DATA / 'missing.yaml'}: no such file or directory",
            f"{several / 'broken_one.yaml'}:5 tools[0].approval: "
            "required for POST tools (or write `approval: none`)",
            f"{several / 'broken_one.yaml'}:13 memory.ttl: "
            "expected a duration like 7d, 4h, 30m or 90s, got 'forever'",
            f"{several / 'broken_two.yml'}:4: invalid YAML: "
            "expected ',' or ']', but got ':' "
            "(while parsing a flow sequence)",
        ]
    )


def test_validate_paths_accepts_valid_files_and_skips_eval_datasets() -> None:
    assert validate_paths([DATA / "several" / "ok.yaml"], env={}) == []
    assert validate_paths([DATA / "several" / "lookup.eval.yaml"], env={}) == []
    assert validate_paths([builtin_dir()], env={}) == []


def test_durations_read_as_words_in_skills_show(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from typer.testing import CliRunner

    from skills.spec import describe_duration
    from switchboard.cli import app as cli

    assert describe_duration(timedelta(days=1)) == "1 day"
    assert describe_duration(timedelta(hours=28)) == "1 day 4 hours"
    assert describe_duration(timedelta(minutes=90)) == "1 hour 30 minutes"
    monkeypatch.delenv("SWITCHBOARD_SKILLS_DIR", raising=False)
    shown = CliRunner().invoke(cli, ["skills", "show", "refunds"]).output
    assert "memory:      7 days\n" in shown and ", 0:00:00" not in shown
    assert "expires in 4 hours" in shown
