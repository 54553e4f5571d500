"""Runtime exceptions.

    SkillError
    ├── UnknownSkill        a skill name that is not registered
    ├── RunFailed           a run ended in an error; carries the reference id that is logged
    ├── ThreadBusy          the thread's previous run did not finish in time
    └── NothingToResume     a decision arrived for a thread that is not waiting for one

Messages are safe to show to a person: no provider error text, no internals.
"""

from __future__ import annotations


class SkillError(Exception):
    """Base class for runtime errors."""


class UnknownSkill(SkillError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"there is no skill named {name!r}")


class RunFailed(SkillError):
    """The run raised; ``ref`` is the id in the log line and the run record."""

    def __init__(self, ref: str, *, cause: str) -> None:
        self.ref = ref
        self.cause = cause
        super().__init__(f"the run failed (reference {ref})")


class ThreadBusy(SkillError):
    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        super().__init__("this conversation is still busy with an earlier message")


class NothingToResume(SkillError):
    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        super().__init__("this conversation is not waiting for an approval")
