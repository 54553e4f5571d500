"""Checking a tool call's arguments against the tool's JSON Schema, in words for people.

Used twice for gated tools: before an approval card is posted (a call that cannot run is
refused to the model, which can correct itself, instead of asking approvers to approve
it) and when an approver edits the arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema

__all__ = ["argument_problems"]

_PII_TOKEN = "#pii:"


def _stands_for_typed_value(error: jsonschema.ValidationError) -> bool:
    """A masked PII token (``[card ****1111 #pii:…]``) stands for what the person typed:
    string rules (pattern, length, format) judge the token, not the value, so they are
    left to the call itself, which receives the original."""
    instance = error.instance
    return (
        isinstance(instance, str)
        and _PII_TOKEN in instance
        and error.validator in {"pattern", "maxLength", "minLength", "format"}
    )


def argument_problems(schema: Mapping[str, Any], args: Mapping[str, Any]) -> list[str]:
    """One line per problem (``amount: 9999 is greater than the maximum of 5000``); an
    empty list when ``args`` fit ``schema`` (Draft 2020-12)."""
    validator = jsonschema.Draft202012Validator(dict(schema or {"type": "object"}))
    problems = []
    for error in sorted(validator.iter_errors(dict(args)), key=lambda e: list(e.absolute_path)):
        if _stands_for_typed_value(error):
            continue
        where = ".".join(str(p) for p in error.absolute_path) or "arguments"
        problems.append(f"{where}: {error.message}")
    return problems
