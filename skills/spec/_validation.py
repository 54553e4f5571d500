"""Validation helpers the spec models share (pydantic errors at YAML locations)."""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal, NoReturn

import jsonschema
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from skills.spec._common import BUILTIN_TOOLS, Loc

ERROR_TYPE: Final = "skill_spec"


def custom_error(message: str) -> PydanticCustomError:
    return PydanticCustomError(ERROR_TYPE, message)


def fail(problems: Sequence[tuple[Loc, str]], value: Any) -> NoReturn:
    """Raise several errors at locations relative to the value being validated."""
    raise ValidationError.from_exception_data(
        "SkillSpec",
        [{"type": custom_error(message), "loc": loc, "input": value} for loc, message in problems],
    )


def reraise_with(exc: ValidationError, problems: Sequence[tuple[Loc, str]], value: Any) -> NoReturn:
    details: list[InitErrorDetails] = [
        {
            "type": PydanticCustomError(error["type"], error["msg"]),
            "loc": error["loc"],
            "input": error["input"],
        }
        for error in exc.errors()
    ]
    details.extend({"type": custom_error(m), "loc": loc, "input": value} for loc, m in problems)
    raise ValidationError.from_exception_data("SkillSpec", details)


def _non_empty(value: str) -> str:
    if not value.strip():
        raise custom_error("must not be empty")
    return value


def _pattern_check(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise custom_error(f"{value!r} is not a valid {what} (must match {pattern})")
        return value

    return AfterValidator(check)


def _scalar_to_str(value: Any) -> Any:
    """Let YAML numbers and booleans stand in for header and query strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _builtin_tool_name(value: str) -> str:
    if value not in BUILTIN_TOOLS:
        close = difflib.get_close_matches(value, sorted(BUILTIN_TOOLS), n=1)
        hint = (
            f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(sorted(BUILTIN_TOOLS))
        )
        raise custom_error(f"unknown built-in tool {value!r}; {hint}")
    return value


@functools.cache
def _schema_meta_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        jsonschema.Draft202012Validator.META_SCHEMA,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def _json_schema(value: Any) -> dict[str, Any] | bool:
    """One entry of ``parameters``: must be a valid Draft 2020-12 JSON Schema."""
    if not isinstance(value, dict | bool):
        raise custom_error("expected a JSON Schema mapping such as {type: string}")
    error = jsonschema.exceptions.best_match(_schema_meta_validator().iter_errors(value))
    if error is not None:
        at = "/".join(str(part) for part in error.absolute_path)
        raise custom_error(f"invalid JSON Schema{f' at {at}' if at else ''}: {error.message}")
    return value


NonEmptyStr = Annotated[str, AfterValidator(_non_empty)]
SkillName = Annotated[str, _pattern_check(r"[a-z][a-z0-9_-]*", "skill name")]
ToolName = Annotated[str, Field(max_length=64), _pattern_check(r"[a-z_][a-z0-9_]*", "tool name")]
ParamName = Annotated[str, _pattern_check(r"[A-Za-z_][A-Za-z0-9_]*", "parameter name")]
HeaderName = Annotated[str, _pattern_check(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", "header name")]
ScalarStr = Annotated[str, BeforeValidator(_scalar_to_str)]
VersionStr = Annotated[
    str, BeforeValidator(_scalar_to_str), AfterValidator(_non_empty), Field(max_length=64)
]
JsonSchema = Annotated[Any, AfterValidator(_json_schema)]
HttpMethod = Annotated[
    Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"], BeforeValidator(_upper)
]


def at_least_one(value: int) -> int:
    if value < 1:
        raise custom_error(f"must be at least 1, got {value}")
    return value


class SpecModel(BaseModel):
    # strict: `four_eyes: "false"` must not quietly become True; forbid: typos are errors.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
