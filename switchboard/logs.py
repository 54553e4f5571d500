"""Process logging: one line per record, PII masked before any handler sees it.

Two formats (``SWITCHBOARD_LOG_FORMAT``): logfmt for people (``text``) and JSON lines for
log pipelines (``json``, the image's default) with the fields Cloud Logging and most
collectors read: ``severity``, ``time``, ``message``, the OpenTelemetry ``trace_id`` /
``span_id`` of the current span (and, with ``GOOGLE_CLOUD_PROJECT``, Cloud Logging's
``logging.googleapis.com/trace`` / ``spanId`` / ``trace_sampled``), and the ``run_id`` and
``skill`` the runtime binds around a turn (:mod:`skills.logcontext`).

No line carries what people wrote or the model answered: card numbers, IBANs, e-mails and
phones are masked everywhere (messages, extras, tracebacks), ``extra=`` fields that hold
content (``text``, ``prompt``, ``body``…) are replaced by their length, a ``'text': …``
pair quoted inside a message (a Slack payload a library prints) is cut out, and the SDK
loggers that print whole request bodies at DEBUG stay at INFO.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from opentelemetry import trace

from skills import logcontext
from skills.pii import PiiLogFilter, mask_obj, mask_text
from switchboard.settings import Settings

#: ``extra=`` fields that hold message content: logged as their length only.
CONTENT_FIELDS = frozenset(
    {"text", "message_text", "prompt", "completion", "content", "body", "blocks", "messages"}
)
#: Loggers that print request and response bodies (messages, prompts) at DEBUG.
BODY_LOGGERS = ("slack_sdk", "slack_bolt", "openai", "anthropic", "langsmith", "mcp")
# A quoted ``'text': '…'`` / ``"text": "…"`` pair, as a dict repr or JSON prints it.
_QUOTED_CONTENT = re.compile(
    r"""(?P<key>(?P<q>['"])(?:text|message|prompt|content|completion)(?P=q)\s*:\s*)"""
    r"""(?P<v>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
)
# Cloud Logging's LogSeverity names, by Python level (the highest at or below it).
_SEVERITIES = ((50, "CRITICAL"), (40, "ERROR"), (30, "WARNING"), (20, "INFO"), (10, "DEBUG"))

_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


class LogfmtFormatter(logging.Formatter):
    """``time level logger message key=value …`` with extras (``extra={...}``) appended.

    Everything it prints is masked here, the last step before output, whatever filters
    the handler has: the message with its arguments, extras, the traceback (``exc=``) and
    the stack (``stack=``). A traceback carries exception messages and source lines, which
    is where card numbers and e-mails turn up.
    """

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        parts = [ts, record.levelname.lower(), record.name, scrub(_message(record))]
        extras = {**logcontext.current(), **_extras(record)}
        parts.extend(f"{k}={_value(v)}" for k, v in sorted(extras.items()))
        if record.exc_info or record.exc_text:
            text = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
            parts.append("exc=" + json.dumps(scrub(text)))
        if record.stack_info:
            parts.append("stack=" + json.dumps(scrub(self.formatStack(record.stack_info))))
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, as Cloud Logging reads them: ``severity`` (LogSeverity
    names), ``time``, ``logger``, ``message``; ``trace_id``/``span_id`` of the current
    OpenTelemetry span, and with ``project`` (``GOOGLE_CLOUD_PROJECT``) Cloud Logging's
    ``logging.googleapis.com/trace`` (``projects/<project>/traces/<trace id>``),
    ``…/spanId`` and ``…/trace_sampled``; ``run_id`` and ``skill`` of the turn; extras as
    fields; a traceback under ``exception``, the stack under ``stack``. Masked and
    scrubbed of content here (see the module docstring), whatever filters the handler has.
    """

    def __init__(self, *, project: str | None = None) -> None:
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "severity": _record_severity(record),
            "logger": record.name,
            "message": scrub(_message(record)),
        }
        entry.update(self._trace())
        entry.update(logcontext.current())
        for key, value in _extras(record).items():
            if key not in entry or key in {"run_id", "skill"}:
                entry[key] = value
        if record.exc_info or record.exc_text:
            text = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
            entry["exception"] = scrub(text)
        if record.stack_info:
            entry["stack"] = scrub(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)

    def _trace(self) -> dict[str, Any]:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return {}
        trace_id, span_id = f"{context.trace_id:032x}", f"{context.span_id:016x}"
        fields: dict[str, Any] = {"trace_id": trace_id, "span_id": span_id}
        if self.project:
            fields["logging.googleapis.com/trace"] = f"projects/{self.project}/traces/{trace_id}"
            fields["logging.googleapis.com/spanId"] = span_id
            fields["logging.googleapis.com/trace_sampled"] = context.trace_flags.sampled
        return fields


def severity(level: int) -> str:
    """Cloud Logging's severity name for a Python log level (custom levels round down)."""
    for threshold, name in _SEVERITIES:
        if level >= threshold:
            return name
    return "DEFAULT"


def _record_severity(record: logging.LogRecord) -> str:
    level: object = record.levelno
    if not isinstance(level, int):  # a hand-made record may carry only ``levelname``
        level = logging.getLevelName(str(record.levelname).upper())
    return severity(level) if isinstance(level, int) else "DEFAULT"


def scrub(text: str) -> str:
    """``text`` masked (card numbers, IBANs, e-mails, phones) and without quoted
    ``'text': …`` pairs (a Slack payload or model message a library prints)."""
    return _QUOTED_CONTENT.sub(r"\g<key>'[content dropped]'", mask_text(text))


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The record's ``extra=`` fields, masked; content fields as their length."""
    out: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key in _STANDARD:
            continue
        if key in CONTENT_FIELDS:
            size = len(value) if isinstance(value, str | bytes | list | dict | tuple) else 0
            out[key] = f"[content dropped: {size}]"
            continue
        if isinstance(value, str):
            value = scrub(value)
        elif _plain(value):  # each string masked where it stands, then the JSON scrubbed
            value = scrub(json.dumps(mask_obj(value), ensure_ascii=False, default=str))
        elif not isinstance(value, int | float | bool | None):
            value = scrub(str(value))
        out[key] = value
    return out


def _plain(value: Any) -> bool:
    return isinstance(value, Mapping | list | tuple)


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError, KeyError):  # a broken format string: keep it all
        return f"{record.msg} {record.args!r}"


def _value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or '"' in text or not text) else text


def formatter(fmt: str = "text", *, project: str | None = None) -> logging.Formatter:
    """The formatter of ``SWITCHBOARD_LOG_FORMAT`` (``project``: GOOGLE_CLOUD_PROJECT)."""
    return JsonFormatter(project=project) if fmt == "json" else LogfmtFormatter()


def configure_logging(
    level: str = "INFO",
    *,
    fmt: str = "text",
    project: str | None = None,
    stream: IO[str] | None = None,
) -> None:
    """Send logs to ``stream`` (stderr), masking card numbers, IBANs, e-mails and phones:
    logfmt lines (``fmt="text"``) or JSON lines (``fmt="json"``, ``SWITCHBOARD_LOG_FORMAT``)
    with Cloud Logging's trace fields for ``project`` (``GOOGLE_CLOUD_PROJECT``)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt, project=project))
    handler.addFilter(PiiLogFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "aiosqlite", "asyncio", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    for chatty in BODY_LOGGERS:  # their DEBUG lines are whole request bodies
        logging.getLogger(chatty).setLevel(max(logging.INFO, root.level))


def configure_from(settings: Settings, level: str | None = None) -> None:
    """:func:`configure_logging` as the settings say: SWITCHBOARD_LOG_LEVEL (or ``level``),
    SWITCHBOARD_LOG_FORMAT and GOOGLE_CLOUD_PROJECT."""
    configure_logging(
        level or settings.log_level,
        fmt=settings.log_format,
        project=settings.google_cloud_project,
    )
