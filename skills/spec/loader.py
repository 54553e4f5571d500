"""Loading spec files and folders: parse, expand, validate, report every issue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from skills._yaml import YamlSyntaxError, load_yaml
from skills.spec.env import Expansion, attach_mcp, mcp_url_problems, url_problems
from skills.spec.errors import SpecIssue, SpecValidationError
from skills.spec.messages import clean_loc, error_message, format_loc
from skills.spec.model import SkillSpec
from skills.spec.tools import UNRESOLVED_URLS, HttpToolSpec


def builtin_dir() -> Path:
    """The folder of the YAML skills that ship with Switchboard."""
    return Path(__file__).resolve().parent.parent / "builtin"


def load_spec_text(text: str, *, filename: str | Path, env: Mapping[str, str]) -> SkillSpec:
    """Load one spec from YAML text; ``filename`` is only used in error messages.

    Raises ``SpecValidationError`` listing every problem found.
    """
    return _load_text(text, filename=str(filename), env=env, source=None)


def load_spec_file(path: Path, *, env: Mapping[str, str]) -> SkillSpec:
    """Load one spec file; the spec's ``source`` is ``path``.

    Raises ``SpecValidationError`` (also when the file cannot be read).
    """
    return _load_text(_read(path), filename=str(path), env=env, source=path)


@dataclass
class LoadResult:
    """Specs that loaded, by name, and the issues of those that did not."""

    specs: dict[str, SkillSpec] = field(default_factory=dict)
    issues: list[SpecIssue] = field(default_factory=list)
    #: Canary versions by name: a second file with the same ``name``, another
    #: ``version`` and a ``rollout`` (``specs`` holds the version it is rolled out beside).
    canaries: dict[str, SkillSpec] = field(default_factory=dict)
    #: Every spec file read, valid or not (``skills validate`` says how many).
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues


def load_spec_dirs(
    dirs: Sequence[Path], *, env: Mapping[str, str], include_builtin: bool = True
) -> LoadResult:
    """Load every spec under ``dirs`` (recursively), built-ins first unless excluded.

    Files ending in ``.eval.yaml`` are evaluation datasets and are skipped. A skill name
    defined twice is an issue naming both files; the first definition is kept.
    """
    folders = [builtin_dir(), *dirs] if include_builtin else list(dirs)
    issues: list[SpecIssue] = []
    files: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            files.extend(_spec_files(folder))
        else:
            issues.append(SpecIssue(str(folder), None, "", "not a directory"))
    result = _load_files(files, env=env)
    result.issues[:0] = issues
    return result


def validate_paths(paths: Sequence[Path], *, env: Mapping[str, str]) -> list[SpecIssue]:
    """Check spec files and folders for ``switchboard skills validate``; [] means all good."""
    return check_paths(paths, env=env).issues


def check_paths(paths: Sequence[Path], *, env: Mapping[str, str]) -> LoadResult:
    """Load spec files and folders as ``switchboard skills validate`` does: the result says
    which files were read (``files``) and every problem (``issues``)."""
    issues: list[SpecIssue] = []
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(_spec_files(path))
        elif path.is_file():
            if not _is_eval_dataset(path):
                files.append(path)
        else:
            issues.append(SpecIssue(str(path), None, "", "no such file or directory"))
    result = _load_files(files, env=env)
    result.issues[:0] = issues
    return result


def _load_files(files: Sequence[Path], *, env: Mapping[str, str]) -> LoadResult:
    result = LoadResult()
    seen: set[Path] = set()
    for path in files:
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        result.files.append(path)
        try:
            spec = load_spec_file(path, env=env)
        except SpecValidationError as exc:
            result.issues.extend(exc.issues)
            continue
        earlier = result.specs.get(spec.name)
        if earlier is None:
            result.specs[spec.name] = spec
            continue
        problem = _twin_problem(earlier, spec, result.canaries.get(spec.name))
        if problem is None:
            stable, canary = (earlier, spec) if spec.rollout is not None else (spec, earlier)
            result.specs[spec.name] = stable
            result.canaries[spec.name] = canary
            continue
        field_name, message = problem
        line = spec._version_line if field_name == "version" else spec._name_line
        result.issues.append(SpecIssue(str(path), line or spec._name_line, field_name, message))
    return result


def _where(spec: SkillSpec) -> str:
    return f"{spec.source}:{spec._name_line}" if spec._name_line else str(spec.source)


def _twin_problem(
    earlier: SkillSpec, spec: SkillSpec, canary: SkillSpec | None
) -> tuple[str, str] | None:
    """Why ``spec`` may not share its name with ``earlier`` (None: it is a valid second
    version). Two versions may run side by side: both have a ``version``, they differ, and
    exactly one - the new one - has a ``rollout``."""
    if canary is not None:
        return (
            "name",
            f"skill {spec.name!r} already has two versions ({_where(earlier)} and "
            f"{_where(canary)}); a third cannot run beside them",
        )
    if (earlier.rollout is None) == (spec.rollout is None):
        return (
            "name",
            f"skill {spec.name!r} is already defined in {_where(earlier)} (to run a new version "
            "beside it, give both a `version:` and the new one `rollout: {canary: 10%}`)",
        )
    if earlier.version is None or spec.version is None or earlier.version == spec.version:
        return (
            "version",
            f"skill {spec.name!r} is also defined in {_where(earlier)}: two versions side by "
            "side need two different `version:` values",
        )
    return None


def _spec_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.suffix in (".yaml", ".yml")
        and path.is_file()
        and not _is_eval_dataset(path)
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def _is_eval_dataset(path: Path) -> bool:
    return path.name.endswith((".eval.yaml", ".eval.yml"))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecValidationError(
            [SpecIssue(str(path), None, "", f"not UTF-8 text ({exc.reason})")]
        ) from None
    except OSError as exc:
        raise SpecValidationError(
            [SpecIssue(str(path), None, "", f"cannot read: {exc.strerror}")]
        ) from None


def _load_text(
    text: str, *, filename: str, env: Mapping[str, str], source: Path | None
) -> SkillSpec:
    try:
        doc = load_yaml(text)
    except YamlSyntaxError as exc:
        raise SpecValidationError([SpecIssue(filename, exc.line, "", exc.message)]) from None

    issues = [SpecIssue(filename, p.line, format_loc(p.path), p.message) for p in doc.problems]
    if not isinstance(doc.data, dict):
        issues.append(
            SpecIssue(
                filename,
                doc.line_for(()) or 1,
                "",
                "expected a mapping with name, description, instructions…",
            )
        )
        raise SpecValidationError(issues)

    expansion = Expansion(env)
    data = expansion.skill(doc.data)
    for loc, message in [
        *expansion.problems,
        *url_problems(expansion, data),
        *mcp_url_problems(expansion, data),
    ]:
        issues.append(SpecIssue(filename, doc.line_for(loc), format_loc(loc), message))

    spec: SkillSpec | None = None
    try:
        spec = SkillSpec.model_validate(
            data, context={UNRESOLVED_URLS: expansion.unresolved_strings}
        )
    except ValidationError as exc:
        env_locs = [loc for loc, _ in expansion.problems]
        for error in exc.errors():
            loc = clean_loc(error["loc"])
            # An unset variable already explains whatever its empty value broke.
            if any(loc[: len(bad)] == bad for bad in env_locs):
                continue
            issues.append(
                SpecIssue(
                    filename, doc.line_for(loc), format_loc(loc), error_message(error, loc, doc)
                )
            )

    if issues or spec is None:
        raise SpecValidationError(sorted(issues, key=lambda i: (i.line or 0, i.field)))

    spec._source = source
    spec._name_line = doc.line_for(("name",))
    spec._version_line = doc.line_for(("version",))
    spec._templates = dict(expansion.templates)
    spec._secrets = expansion.secrets_under(())
    for index, tool in enumerate(spec.tools):
        if isinstance(tool, HttpToolSpec):
            prefix = ("tools", index, "http")
            tool.http._templates = {
                loc[len(prefix) :]: text
                for loc, text in expansion.templates.items()
                if loc[: len(prefix)] == prefix
            }
            tool.http._secrets = expansion.secrets_under(prefix)
    attach_mcp(spec, expansion, doc)
    return spec
