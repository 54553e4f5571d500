"""Validation errors as ``file:line field: message`` lines people can act on."""

from __future__ import annotations

import difflib
import json
import re
from typing import Any, Final

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from skills._yaml import LineMappedDocument
from skills.spec._common import Loc
from skills.spec.access import Access, Budget, Memory
from skills.spec.approvals import ApprovalPolicy, Approvers
from skills.spec.mcp import McpServerSpec, McpToolRef
from skills.spec.model import SkillSpec
from skills.spec.tools import UNION_TAGS, BuiltinToolRef, HttpSpec, HttpToolSpec

_TYPE_MESSAGES: Final = {
    "missing": "required",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "list_type": "expected a list",
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
}


def clean_loc(loc: tuple[str | int, ...]) -> Loc:
    return tuple(part for part in loc if part not in UNION_TAGS and part != "[key]")


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def error_message(error: ErrorDetails, loc: Loc, doc: LineMappedDocument) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return _unknown_key_message(loc, doc)
    if kind in _TYPE_MESSAGES:
        message = _TYPE_MESSAGES[kind]
        got = _describe_input(error["input"])
        return f"{message} (got {got})" if got and kind != "missing" else message
    message = error["msg"].removeprefix("Value error, ")
    return message[:1].lower() + message[1:] if message[1:2].islower() else message


def _describe_input(value: Any) -> str:
    # Never echo strings: they may be expanded secrets.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _unknown_key_message(loc: Loc, doc: LineMappedDocument) -> str:
    model = _model_at(loc[:-1], doc)
    if model is None:
        return "unknown key"
    allowed = [info.alias or name for name, info in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return "unknown key; expected one of: " + ", ".join(allowed)


def _model_at(loc: Loc, doc: LineMappedDocument) -> type[BaseModel] | None:
    shape = tuple("*" if isinstance(part, int) else part for part in loc)
    if shape == ("tools", "*"):
        item = _get(doc.data, loc)
        return BuiltinToolRef if isinstance(item, dict) and "use" in item else HttpToolSpec
    return _MODELS_BY_SHAPE.get(shape)


_MODELS_BY_SHAPE: Final[dict[tuple[str, ...], type[BaseModel]]] = {
    (): SkillSpec,
    ("access",): Access,
    ("memory",): Memory,
    ("budget",): Budget,
    ("tools", "*", "http"): HttpSpec,
    ("tools", "*", "approval"): ApprovalPolicy,
    ("tools", "*", "approval", "approvers"): Approvers,
    ("mcp", "*"): McpServerSpec,
    ("mcp", "*", "tools", "*"): McpToolRef,
    ("mcp", "*", "tools", "*", "approval"): ApprovalPolicy,
    ("mcp", "*", "tools", "*", "approval", "approvers"): Approvers,
}


def _get(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data
