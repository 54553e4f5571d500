"""Log formatting cost: logfmt vs JSON lines, per record kind, with and without a span.

Every line is masked (skills.pii) and, in JSON, scrubbed of quoted content and given the
trace and run fields, all in the caller's thread: this measures what that costs a turn.

    .venv/bin/python bench/logs.py [--records 20000]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402

from skills import logcontext  # noqa: E402
from skills.pii import PiiLogFilter  # noqa: E402
from switchboard.logs import JsonFormatter, LogfmtFormatter  # noqa: E402


def _records() -> dict[str, logging.LogRecord]:
    def make(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
        info = None
        if exc:
            try:
                raise ValueError("charge on 4111 1111 1111 1111 failed")
            except ValueError:
                info = sys.exc_info()
        record = logging.LogRecord("switchboard.bench", 20, __file__, 1, msg, args or None, info)
        for key, value in extra.items():
            setattr(record, key, value)
        return record

    payload = {"type": "app_mention", "text": "refund 4111 1111 1111 1111 please", "user": "U0"}
    return {
        "plain": make("http tool %s GET %s -> %d in %d ms", "lookup", "crm/orders/42", 200, 9),
        "extras": make("stop requested", job_id=42, user="U0SAM", ok=True),
        "payload": make("Unhandled request (%s)", payload),
        "exception": make("run failed ref=%s", "abc123", exc=True),
    }


def _measure(formatter: logging.Formatter, record: logging.LogRecord, n: int) -> float:
    flt = PiiLogFilter()
    start = time.perf_counter()
    for _ in range(n):
        copy = logging.makeLogRecord(record.__dict__)
        flt.filter(copy)
        formatter.format(copy)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    tracer = TracerProvider().get_tracer("bench")
    print(f"µs per line ({args.records} records each; filter + format)")
    print(f"{'record':<10} {'logfmt':>8} {'json':>8} {'json+span+run':>14}")
    for name, record in _records().items():
        text = _measure(LogfmtFormatter(), record, args.records)
        plain = _measure(JsonFormatter(), record, args.records)
        with tracer.start_as_current_span("turn"), logcontext.bound(run_id="r" * 32, skill="x"):
            traced = _measure(JsonFormatter(project="bench"), record, args.records)
        print(f"{name:<10} {text:8.1f} {plain:8.1f} {traced:14.1f}")


if __name__ == "__main__":
    main()
