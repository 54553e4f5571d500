"""Who may use a skill, how long it remembers, what it may spend."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, Field

from skills.spec._validation import NonEmptyStr, SpecModel, at_least_one
from skills.spec.durations import Duration


class Access(SpecModel):
    """Allow-lists; all empty means everyone may use the skill.

    Guest accounts (``guests``) and people from other organizations over Slack Connect
    (``external``) are refused unless the skill opts in; the allow-lists then apply to
    them too.
    """

    channels: list[NonEmptyStr] = Field(default_factory=list)
    users: list[NonEmptyStr] = Field(default_factory=list)
    usergroups: list[NonEmptyStr] = Field(default_factory=list)
    guests: bool = False
    external: bool = False


class Memory(SpecModel):
    """How long a conversation is remembered after its last message."""

    ttl: Duration = timedelta(days=7)


class Budget(SpecModel):
    """Spending limits; a skill over its budget refuses new runs until the next UTC day."""

    daily_tokens: Annotated[int, AfterValidator(at_least_one)]
