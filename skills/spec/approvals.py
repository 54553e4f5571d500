"""The approval policy of a risky tool: who approves, how many, for how long."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Discriminator, Field, Tag, model_validator

from skills.spec._validation import (
    ERROR_TYPE,
    NonEmptyStr,
    SpecModel,
    at_least_one,
    custom_error,
    fail,
)
from skills.spec.durations import Duration


class Approvers(SpecModel):
    """Who may approve: Slack user ids and user group ids."""

    users: list[NonEmptyStr] = Field(default_factory=list)
    usergroups: list[NonEmptyStr] = Field(default_factory=list)

    @model_validator(mode="after")
    def _someone(self) -> Approvers:
        if not self.users and not self.usergroups:
            raise custom_error("at least one approver (users or usergroups) is required")
        return self


class ApprovalPolicy(SpecModel):
    """Gate for a risky tool call: who approves, how many, for how long."""

    approvers: Approvers
    quorum: Annotated[int, AfterValidator(at_least_one)] = 1
    four_eyes: bool = True
    expires_in: Duration = timedelta(hours=24)
    allow_edit: bool = False

    @model_validator(mode="after")
    def _quorum_reachable(self) -> ApprovalPolicy:
        users = len(set(self.approvers.users))
        if not self.approvers.usergroups and self.quorum > users:
            message = f"quorum {self.quorum} is unreachable: only {users} approver(s) listed"
            fail([(("quorum",), message)], self.quorum)
        return self


def _approval_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "<none>"
    if isinstance(value, dict | ApprovalPolicy):
        return "<policy>"
    return None


Approval = Annotated[
    Annotated[ApprovalPolicy, Tag("<policy>")] | Annotated[Literal["none"], Tag("<none>")],
    Discriminator(
        _approval_kind,
        custom_error_type=ERROR_TYPE,
        custom_error_message="expected `none` or a mapping with approvers",
    ),
]
