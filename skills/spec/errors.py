"""The spec's exception tree and ``SpecIssue`` (``file:line field: message``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class SpecError(Exception):
    """Base class for skill spec errors."""


@dataclass(frozen=True)
class SpecIssue:
    """One problem in one spec file, printed as ``file:line field: message``."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where} {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class SpecValidationError(SpecError):
    """A spec (or several) failed to load; ``issues`` holds every problem found."""

    def __init__(self, issues: Sequence[SpecIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class ToolArgumentsError(SpecError):
    """A tool call's arguments do not satisfy the tool's parameter schema.

    The message is meant for the model, so it can correct the call.
    """

    def __init__(self, tool: str, problems: Sequence[str]) -> None:
        self.tool = tool
        self.problems = list(problems)
        super().__init__(f"invalid arguments for {tool}: " + "; ".join(self.problems))
