"""Schedules, their firings and stand-up state, as three stores over one database.

:class:`ScheduleStore` owns the schedule rows and carries the other two for the same
database: ``store.firings`` (:class:`FiringStore`, run records recorded exactly once) and
``store.standups`` (:class:`StandupStore`). Every store returns frozen records
(``storage.schedules._records``), never ORM rows; JSON columns are parsed and built in
``storage/`` only, and SQL failures come out as :mod:`storage.errors`.
"""

from storage.schedules._records import (
    FINAL_STATUSES,
    FiringResult,
    PlannedFiring,
    RunStatus,
    Schedule,
    ScheduleRun,
    StandupAnswer,
    StandupReply,
    StandupSession,
)
from storage.schedules.firings import FiringStore
from storage.schedules.standups import PROMPTING_WINDOW, StandupStore
from storage.schedules.store import ScheduleStore

__all__ = [
    "FINAL_STATUSES",
    "PROMPTING_WINDOW",
    "FiringResult",
    "FiringStore",
    "PlannedFiring",
    "RunStatus",
    "Schedule",
    "ScheduleRun",
    "ScheduleStore",
    "StandupAnswer",
    "StandupReply",
    "StandupSession",
    "StandupStore",
]
