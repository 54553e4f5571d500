"""The run queue's settings and the JSON log format (contracts the Helm chart relies on)."""

from __future__ import annotations

import json
import logging

import pytest

from switchboard.logs import JsonFormatter
from switchboard.settings import ConfigError, Settings


def test_log_format_json_lines_carry_severity_message_logger_time() -> None:
    record = logging.makeLogRecord(
        {"name": "switchboard.worker", "levelname": "WARNING", "msg": "queue %s", "args": ("slow",)}
    )
    record.job_id = 7
    line = json.loads(JsonFormatter().format(record))
    assert line["severity"] == "WARNING" and line["message"] == "queue slow"
    assert line["logger"] == "switchboard.worker" and line["time"].endswith("Z")
    assert line["job_id"] == 7


def test_bad_log_format_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="SWITCHBOARD_LOG_FORMAT"):
        Settings.from_env({"SWITCHBOARD_LOG_FORMAT": "xml"})


def test_receive_only_needs_a_shared_queue() -> None:
    embedded = Settings.from_env({"SWITCHBOARD_INPROCESS_WORKERS": "0"})
    with pytest.raises(ConfigError, match="SWITCHBOARD_INPROCESS_WORKERS"):
        embedded.check_receive_only()
    shared = Settings.from_env(
        {
            "SWITCHBOARD_INPROCESS_WORKERS": "0",
            "DATABASE_URL": "postgresql+asyncpg://u@db/sb",
        }
    )
    shared.check_receive_only()  # allowed: workers elsewhere read the same queue


def test_worker_concurrency_sets_runtime_slots_unless_runs_are_capped() -> None:
    assert Settings.from_env({}).runtime_slots == 64
    assert Settings.from_env({"SWITCHBOARD_WORKER_CONCURRENCY": "100"}).runtime_slots == 100
    assert Settings.from_env({"SWITCHBOARD_MAX_CONCURRENT_RUNS": "2"}).runtime_slots == 2
