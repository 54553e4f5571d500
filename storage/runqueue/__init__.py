"""The durable run queue (Procrastinate) and its SQL inbox; see docs/adr/0001-run-queue.md."""

from storage.runqueue.inbox import Backlog, InboxItem, InboxStore
from storage.runqueue.queue import (
    THREAD_TASK,
    TURNS,
    WORK,
    WORK_TASK,
    HandBack,
    Handlers,
    JobInfo,
    JobRow,
    QueueError,
    QueueStats,
    QueueUnavailable,
    Retryable,
    RunQueue,
    Superseded,
    ThreadHandler,
    WorkerStats,
    WorkHandler,
)
from storage.runqueue.schema import ensure_queue_schema, libpq_dsn, queue_schema_ready

__all__ = [
    "THREAD_TASK",
    "TURNS",
    "WORK",
    "WORK_TASK",
    "Backlog",
    "HandBack",
    "Handlers",
    "InboxItem",
    "InboxStore",
    "JobInfo",
    "JobRow",
    "QueueError",
    "QueueStats",
    "QueueUnavailable",
    "Retryable",
    "RunQueue",
    "Superseded",
    "ThreadHandler",
    "WorkHandler",
    "WorkerStats",
    "ensure_queue_schema",
    "libpq_dsn",
    "queue_schema_ready",
]
