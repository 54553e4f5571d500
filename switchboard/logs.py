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


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError, KeyError):  # a broken format string: keep it all
        return f"{record.msg} {record.args!r}"


def _value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or '"' in text or not text) else text


def configure_logging(level: str = "INFO") -> None:
    """Send logs to stderr in logfmt, masking card numbers, IBANs, e-mails and phones."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    handler.addFilter(PiiLogFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "aiosqlite", "asyncio", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
