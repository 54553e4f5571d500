"""A canary: the share of new conversations a newer version of a skill gets."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from skills.spec._validation import SpecModel, custom_error


def _percent(value: Any) -> Any:
    """``10%``, ``"10"`` or ``10`` (and ``2.5%``) as a number of percent."""
    if isinstance(value, str):
        text = value.strip().removesuffix("%").strip()
        try:
            return float(text)
        except ValueError:
            raise custom_error(f"expected a share like 10%, got {value!r}") from None
    return value


Percent = Annotated[float, BeforeValidator(_percent), Field(ge=0, le=100)]


class Rollout(SpecModel):
    """How much of the traffic this version gets while an older one (same ``name``, no
    ``rollout``) keeps running: ``canary: 10%`` sends that share of *new* conversations to
    it, chosen by thread, so a conversation never switches version mid-way."""

    canary: Percent
