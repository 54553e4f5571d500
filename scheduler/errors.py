"""Scheduler exceptions, safe to show to the person who asked.

SchedulerError
├── InvalidSchedule     what was typed does not make a schedule (nothing was saved)
├── ScheduleNotFound    no schedule with that id
└── NotAllowed          the person may not change this schedule
"""

from __future__ import annotations


class SchedulerError(Exception):
    """Base class for scheduler errors."""


class InvalidSchedule(SchedulerError):
    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


class ScheduleNotFound(SchedulerError):
    def __init__(self, schedule_id: str) -> None:
        self.schedule_id = schedule_id
        super().__init__(f"there is no schedule {schedule_id!r}")


class NotAllowed(SchedulerError):
    def __init__(self, action: str) -> None:
        self.action = action
        super().__init__(f"only the schedule's owner or an admin can {action} it")
