"""JSON logs (``SWITCHBOARD_LOG_FORMAT=json``) of a real scenario, every line parsed.

The process log is configured as ``switchboard serve`` does it (``configure_logging`` with
JSON, the PII filter and the SDK loggers held at INFO), at DEBUG, with tracing on and
``GOOGLE_CLOUD_PROJECT`` set. Then, through the signed HTTP app, the fake Slack API and a
local CRM: a mention answered end to end with a tool that fails, and a refund that needs
an approval, approved by a click. Every line must be one JSON object with a Cloud Logging
severity; lines of a turn carry its run id, skill and trace; and nothing anyone typed or
the model answered appears, nor the card number.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skills import tracing
from skills.pii import PiiLogFilter
from switchboard.logs import (
    CONTENT_FIELDS,
    JsonFormatter,
    LogfmtFormatter,
    configure_logging,
    scrub,
    severity,
)
from tests.bot.conftest import BotFactory
from tests.bot.test_approvals import card, click
from tests.fakes.chat import ScriptedChatModel, reply, tool_call
from tests.fakes.http_target import HttpTarget
from tests.fakes.otlp_receiver import OtlpReceiver

PAN = "4111 1111 1111 1111"
PHRASE = "the purple elephant order"
REASON = "grandmother's teapot arrived cracked"
ANSWER = "Order 42 is paid, the customer lookup is down right now."
REFUND_ANSWER = "Your refund went through, reference RF-77."
PROJECT = "sb-test-project"
SEVERITIES = {"DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL"}

ORDERS = """\
name: orders
description: Look up orders and customers in the CRM.
instructions: Look up orders for the support team.
tools:
  - name: lookup_order
    description: Fetch an order by id.
    http:
      method: GET
      url: "${CRM_URL}/orders/{order_id}"
    parameters:
      order_id: {type: string}
  - name: lookup_customer
    description: Fetch a customer by id.
    http:
      method: GET
      url: "${CRM_URL}/customers/{customer_id}"
    parameters:
      customer_id: {type: string}
"""


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The root logger as the image configures it, into a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    touched = [
        logging.getLogger(n)
        for n in ("slack_sdk", "slack_bolt", "openai", "anthropic", "langsmith", "mcp", "httpx")
    ]
    levels = [lg.level for lg in touched]
    stream = io.StringIO()
    configure_logging("DEBUG", fmt="json", project=PROJECT, stream=stream)
    yield stream
    root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    for lg, level in zip(touched, levels, strict=True):
        lg.setLevel(level)


@pytest.fixture
def crm() -> Iterator[HttpTarget]:
    with HttpTarget() as target:
        target.route("GET", "/orders/42", json={"id": "42", "status": "paid", "card": PAN})
        target.route("GET", "/customers/7", status=500, text=f"db down for {PAN}")
        target.route("POST", "/refunds", json={"refund_id": "RF-77", "status": "processed"})
        yield target


def parse(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = stream.getvalue().splitlines()
    entries = []
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:  # pragma: no cover - the failure message
            raise AssertionError(f"line {number} is not JSON ({exc}): {line[:300]}") from None
        assert isinstance(entry, dict), f"line {number} is not an object: {line[:300]}"
        entries.append(entry)
    return entries


async def test_every_line_of_a_scenario_is_json_with_severity_trace_and_no_content(
    make_bot: BotFactory, tmp_path: Path, crm: HttpTarget, json_log: io.StringIO
) -> None:
    receiver = OtlpReceiver().start()
    handle = tracing.setup_tracing(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "sb-logs"},
        set_global=False,
    )
    assert handle is not None
    try:
        folder = tmp_path / "skills"
        folder.mkdir()
        (folder / "orders.yaml").write_text(ORDERS)
        model = ScriptedChatModel(
            [
                tool_call("lookup_order", order_id="42"),
                tool_call("lookup_customer", customer_id="7"),  # the CRM answers 500
                reply(ANSWER),
                tool_call("issue_refund", order_id="1001", amount=25, reason=REASON),
                reply(REFUND_ANSWER),
            ]
        )
        env = await make_bot(
            {"offline": model},
            skills_env={"CRM_URL": crm.base_url},
            SWITCHBOARD_SKILLS_DIR=str(folder),
            SWITCHBOARD_HTTP_ALLOWED_HOSTS=crm.base_url.removeprefix("http://"),
        )
        await env.mention(f"orders where is {PHRASE} 42? I paid with {PAN}")
        await env.idle()
        _, ts = await env.mention(
            f"refunds please refund order 1001, {REASON}, card {PAN}", channel="C0PAYMENTS"
        )
        await env.idle()
        await click(env, card(env, ts), "approval_approve", "U0CAROL")
        assert handle.flush()
        deadline = time.monotonic() + 5
        while not receiver.spans and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        tracing.uninstall()
        handle.shutdown()
        receiver.stop()

    # The scenario happened (positive controls): both answers posted, the refund ran once.
    texts = env.answer_texts()
    assert any("Order 42 is paid" in t for t in texts), texts
    assert any("RF-77" in t for t in texts), texts
    assert len([r for r in crm.requests if r.path == "/refunds"]) == 1
    assert any(r.path == "/customers/7" for r in crm.requests)

    raw = json_log.getvalue()
    entries = parse(json_log)
    assert len(entries) >= 10, raw[:2000]
    for entry in entries:
        assert entry.get("severity") in SEVERITIES, entry
        assert entry.get("time") and entry.get("logger") and "message" in entry, entry

    # Nothing typed, answered or returned by a tool, and no card number, on any line.
    digits = re.sub(r"\D", "", PAN)
    for forbidden in (PHRASE, REASON, "purple elephant", "teapot", "Order 42 is paid", "RF-77"):
        assert forbidden not in raw, f"{forbidden!r} logged"
    assert PAN not in raw and digits not in re.sub(r"[ \-.]", "", raw), "card number logged"

    # Lines of a turn carry its run, skill and trace, with Cloud Logging's fields.
    in_runs = [e for e in entries if "run_id" in e]
    assert {e["skill"] for e in in_runs} >= {"orders", "refunds"}, in_runs[:3]
    traced_lines = [e for e in entries if "trace_id" in e]
    assert traced_lines, "no line carried the current span"
    exported = {s.trace_id for s in receiver.spans}
    for entry in traced_lines:
        assert re.fullmatch(r"[0-9a-f]{32}", entry["trace_id"])
        assert re.fullmatch(r"[0-9a-f]{16}", entry["span_id"])
        assert entry["logging.googleapis.com/trace"] == (
            f"projects/{PROJECT}/traces/{entry['trace_id']}"
        )
        assert entry["logging.googleapis.com/spanId"] == entry["span_id"]
        assert entry["logging.googleapis.com/trace_sampled"] is True
    assert {e["trace_id"] for e in traced_lines} <= exported, "log traces are the exported ones"
    assert any("run_id" in e and "trace_id" in e for e in entries)


def _record(message: str, *args: Any, **extra: Any) -> logging.LogRecord:
    record = logging.makeLogRecord(
        {"name": "switchboard.x", "levelno": 20, "levelname": "INFO", "msg": message}
    )
    record.args = args or None
    for key, value in extra.items():
        setattr(record, key, value)
    return record


@pytest.mark.parametrize(
    ("level", "expected"),
    [(5, "DEFAULT"), (10, "DEBUG"), (20, "INFO"), (25, "INFO"), (30, "WARNING"),
     (40, "ERROR"), (50, "CRITICAL"), (60, "CRITICAL")],
)  # fmt: skip
def test_severity_names_are_cloud_loggings(level: int, expected: str) -> None:
    assert severity(level) == expected


def test_content_fields_and_quoted_payload_text_are_dropped() -> None:
    formatter = JsonFormatter()
    payload = {"type": "app_mention", "text": f"{PHRASE} {PAN}", "user": "U0SAM"}
    record = _record(
        "Unhandled request (%s)", payload, text=PHRASE, channel="C0GENERAL", blocks=[1, 2]
    )
    PiiLogFilter().filter(record)
    entry = json.loads(formatter.format(record))
    assert PHRASE not in json.dumps(entry) and "4111" not in json.dumps(entry)
    assert entry["text"] == f"[content dropped: {len(PHRASE)}]"
    assert entry["blocks"] == "[content dropped: 2]"
    # Positive control: what is not content stays.
    assert entry["channel"] == "C0GENERAL"
    assert "'type': 'app_mention'" in entry["message"] and "'user': 'U0SAM'" in entry["message"]
    assert set(CONTENT_FIELDS) >= {"text", "prompt", "body"}


def test_scrub_handles_json_and_escaped_quotes() -> None:
    line = json.dumps({"text": 'he said "refund 4111 1111 1111 1111" twice', "ok": True})
    out = scrub(line)
    assert "refund" not in out and "twice" not in out and '"ok": true' in out


def test_without_a_span_or_project_no_trace_fields() -> None:
    entry = json.loads(JsonFormatter(project=PROJECT).format(_record("plain")))
    assert "trace_id" not in entry and "logging.googleapis.com/trace" not in entry
    assert entry["severity"] == "INFO" and entry["message"] == "plain"


def test_structured_extras_are_masked_where_each_string_stands() -> None:
    # Full-width digits: a plain json.dumps would escape them past the text masker.
    wide = PAN.translate({ord(d): ord(d) + 0xFEE0 for d in "0123456789"})
    record = _record("lookup done", order={"card": PAN, "alt": [wide], "n": 3}, ref=ValueError(PAN))
    PiiLogFilter().filter(record)
    for formatter in (JsonFormatter(), LogfmtFormatter()):
        line = formatter.format(record)
        assert "4111" not in line and "1111 1111" not in line and wide[5:] not in line
        assert "lookup done" in line and "\\u" not in line  # positive control: kept, unescaped
