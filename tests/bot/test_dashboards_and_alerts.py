"""Dashboards and alerts as code (``deploy/observability/``) against the real ``/metrics``.

The Grafana dashboard and the Prometheus rules are only worth something if the series
they query exist. So: the rule file is checked the way ``promtool check rules`` would
(structure, durations, severities, balanced expressions, annotation templates naming only
labels the expression keeps), the dashboard's structure and coverage are checked, and then
every metric name in their PromQL — pulled out by a small PromQL lexer, itself tested on
awkward expressions — must be in ``GET /metrics`` of a bot that just answered a mention,
paused on an approval and resumed after the click.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.bot.conftest import BotFactory
from tests.bot.test_approvals import card, click
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.http_target import HttpTarget

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "observability" / "switchboard-alerts.yaml"
DASHBOARD = ROOT / "deploy" / "observability" / "grafana-dashboard.json"

_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_IDENT = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (Grafana's ``$var`` allowed)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,[^)]*\)", r"\1", text)
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # ranges and subqueries
    text = _LABEL_LIST.sub(" ", text)  # label lists of aggregations and matching
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue  # a function, or an operator keyword
        names.add(name)
    return names


def kept_labels(expr: str) -> set[str]:
    """Labels an expression's result can carry: those of its ``by (…)`` clauses."""
    return {
        label.strip()
        for kind, labels in _LABEL_LIST.findall(_STRING.sub('""', expr))
        if kind == "by"
        for label in labels.split(",")
        if label.strip()
    }


def balanced(expr: str) -> bool:
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in _STRING.sub('""', expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        (
            'sum by (skill) (rate(foo_total{a="b c) {x}", le="3.0"}[5m] offset 1h))'
            " / on(x) group_left(y, z) bar_seconds > 1e3 and baz:recorded",
            {"foo_total", "bar_seconds", "baz:recorded"},
        ),
        (
            "histogram_quantile(0.95, sum(rate(h_bucket{q=~'a|b'}[$__rate_interval])) by (le))",
            {"h_bucket"},
        ),
        ("(sum(g) or vector(0)) < 1 unless absent(other)", {"g", "other"}),
        ("max_over_time(x[1h:5m]) - ignoring(le) y_count", {"x", "y_count"}),
        ("label_values(switchboard_runs_total, skill)", {"switchboard_runs_total"}),
        ("sum without (instance) (a) * 2.5e-3 + b offset -5m", {"a", "b"}),
    ],
)
def test_the_promql_lexer_finds_exactly_the_metrics(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in data["panels"] for t in p.get("targets", [])]
    for variable in data["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def test_the_rules_file_is_well_formed() -> None:
    data = yaml.safe_load(RULES.read_text())
    assert set(data) == {"groups"} and data["groups"], "a rule file is {groups: [...]}"
    group_names, alerts = set(), set()
    for group in data["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}, group.keys()
        assert isinstance(group["name"], str) and group["name"] not in group_names
        group_names.add(group["name"])
        assert "interval" not in group or _DURATION.match(group["interval"])
        assert group["rules"], f"group {group['name']} has no rules"
        for rule in group["rules"]:
            name = rule.get("alert")
            where = f"{group['name']}/{name}"
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
            assert isinstance(name, str) and re.fullmatch(r"Switchboard[A-Z][A-Za-z0-9]+", name)
            assert name not in alerts, f"duplicate alert {name}"
            alerts.add(name)
            expr = rule["expr"]
            assert isinstance(expr, str) and expr.strip() and balanced(expr), where
            assert metric_names(expr), f"{where}: the expression reads no metric"
            assert _DURATION.match(str(rule["for"])), f"{where}: for: {rule['for']!r}"
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, where
            annotations = rule["annotations"]
            assert annotations["summary"].strip() and annotations["description"].strip(), where
            for text in annotations.values():
                assert text.count("{{") == text.count("}}"), f"{where}: unbalanced template"
                used = set(re.findall(r"\$labels\.(\w+)", text))
                assert used <= kept_labels(expr), f"{where}: {used - kept_labels(expr)} dropped"
    # What the issue asks the rules to watch.
    exprs = " ".join(rule["expr"] for rule in _rules())
    for needed in (
        "switchboard_slack_ack_seconds",  # ack failures toward Slack's disable threshold
        "switchboard_queue_oldest_age_seconds",
        "switchboard_scheduler_leader",
        'outcome="error"',  # model error rate
        'reason="budget"',
    ):
        assert needed in exprs, needed


def test_the_dashboard_is_well_formed_and_covers_the_operators_questions() -> None:
    data = json.loads(DASHBOARD.read_text())
    assert data["uid"] and data["title"] == "Switchboard" and data["schemaVersion"] >= 36
    names = {v["name"] for v in data["templating"]["list"]}
    assert {"datasource", "skill"} <= names
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = []
    for panel in data["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        titles.append(panel["title"].lower())
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["refId"] and balanced(target["expr"]), target
            assert metric_names(target["expr"]), target["expr"]
    for topic in (
        "ack latency",
        "ack failures",
        "queue age",
        "runs by skill and outcome",
        "tokens by skill",
        "cost by skill",
        "approval waits",
        "scheduler lateness",
        "error rate",
    ):
        assert any(topic in title for title in titles), f"no panel about {topic}"


def _exposed(text: str) -> tuple[set[str], set[str]]:
    """(every series name /metrics declares, the names that have samples)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "gauge": ("",),
    }
    declared: set[str] = set()
    sampled: set[str] = set()
    for family in text_string_to_metric_families(text):
        declared.update(family.name + s for s in suffixes.get(family.type, ("",)))
        for sample in family.samples:
            declared.add(sample.name)
            sampled.add(sample.name)
    return declared, sampled


@pytest.fixture
def crm() -> Iterator[HttpTarget]:
    with HttpTarget() as target:
        target.route("POST", "/refunds", json={"refund_id": "RF-77", "status": "processed"})
        yield target


async def test_every_metric_the_dashboard_and_rules_read_is_exported(
    make_bot: BotFactory, crm: HttpTarget, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  scripted: {input: 2, output: 10}\n")
    model = ScriptedChatModel(
        [
            reply("Hello there."),
            tool_call("issue_refund", order_id="1001", amount=25),
            reply("Refund done."),
        ]
    )
    env = await make_bot(
        {"offline": model},
        skills_env={"CRM_URL": crm.base_url},
        SWITCHBOARD_HTTP_ALLOWED_HOSTS=crm.base_url.removeprefix("http://"),
        SWITCHBOARD_MODEL_PRICES=str(prices),
    )
    await env.mention("ask hello")
    await env.idle()
    _, ts = await env.mention("refunds refund order 1001", channel="C0PAYMENTS")
    await env.idle()
    await click(env, card(env, ts), "approval_approve", "U0CAROL")
    assert any("Refund done." in t for t in env.answer_texts())

    response = await env.http.get("/metrics")
    assert response.status_code == 200
    declared, sampled = _exposed(response.text)

    referenced: dict[str, str] = {}
    for rule in _rules():
        for name in metric_names(rule["expr"]):
            referenced.setdefault(name, f"rule {rule['alert']}")
    for expr in _dashboard_exprs():
        for name in metric_names(expr):
            referenced.setdefault(name, "dashboard")
    assert len(referenced) >= 15, sorted(referenced)
    missing = {name: where for name, where in referenced.items() if name not in declared}
    assert missing == {}, f"referenced but not in /metrics: {missing}"
    # The scenario produced real samples for what it exercised, not just declarations.
    for name in (
        "switchboard_slack_ack_seconds_bucket",
        "switchboard_slack_requests_total",
        "switchboard_runs_total",
        "switchboard_model_tokens_total",
        "switchboard_model_cost_usd_total",
        "switchboard_approval_wait_seconds_bucket",
        "switchboard_scheduler_leader",
        "switchboard_schedule_lateness_seconds_count",
    ):
        assert name in sampled, f"{name} has no sample after the scenario"
    # A bucket boundary an expression selects (le="3.0") must be one the histogram has.
    buckets = {
        (s.name, s.labels["le"])
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name.endswith("_bucket")
    }
    exprs = [rule["expr"] for rule in _rules()] + _dashboard_exprs()
    selected = {
        (name, le)
        for expr in exprs
        for name, le in re.findall(r'(\w+_bucket)\{[^}]*le="([^"]+)"', expr)
    }
    assert selected, "the ack-failure queries select the 3 s bucket"
    assert selected <= buckets, selected - buckets
    # A name the files do not use is rejected (the check can fail).
    assert "switchboard_no_such_metric_total" not in declared
