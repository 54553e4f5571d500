"""Process logging: one line per record, PII masked before any handler sees it."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from skills.pii import PiiLogFilter, mask_obj, mask_text

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
        parts = [ts, record.levelname.lower(), record.name, mask_text(_message(record))]
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        parts.extend(f"{k}={_value(mask_obj(v))}" for k, v in sorted(extras.items()))
        if record.exc_info or record.exc_text:
            text = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
            parts.append("exc=" + json.dumps(mask_text(text)))
        if record.stack_info:
            parts.append("stack=" + json.dumps(mask_text(self.formatStack(record.stack_info))))
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, as Cloud Logging reads them: ``severity``, ``message``,
    ``logger``, ``time``; extras as fields; a traceback under ``exception``, the stack under
    ``stack``. Masked here like :class:`LogfmtFormatter`, whatever filters the handler has."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "severity": "WARNING" if record.levelname == "WARN" else record.levelname,
            "logger": record.name,
            "message": mask_text(_message(record)),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                value = mask_obj(value)
                entry[key] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info or record.exc_text:
            text = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
            entry["exception"] = mask_text(text)
        if record.stack_info:
            entry["stack"] = mask_text(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False)


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError, KeyError):  # a broken format string: keep it all
        return f"{record.msg} {record.args!r}"


def _value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or '"' in text or not text) else text


def configure_logging(level: str = "INFO", *, fmt: str = "text") -> None:
    """Send logs to stderr, masking card numbers, IBANs, e-mails and phones: logfmt lines
    (``fmt="text"``) or JSON lines (``fmt="json"``, ``SWITCHBOARD_LOG_FORMAT``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    handler.addFilter(PiiLogFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "aiosqlite", "asyncio", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
