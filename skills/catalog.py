"""Loading a deployment's skills: the built-in YAML specs, the spec folders
(``SWITCHBOARD_SKILLS_DIR``) and the Python skills, into one :class:`SkillRegistry`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skills.digest import DIGEST_SKILL
from skills.registry import Skill, SkillRegistry
from skills.spec import LoadResult, SpecIssue, builtin_dir, load_spec_dirs

__all__ = [
    "LoadedSkills",
    "describe_sources",
    "load_registry",
    "load_skills",
    "missing_skill",
    "python_skills",
]

log = logging.getLogger(f"switchboard.{__name__}")


@dataclass(frozen=True, slots=True)
class LoadedSkills:
    registry: SkillRegistry
    issues: Sequence[SpecIssue]
    #: The spec folders read (built-ins first) and the spec files found in them.
    dirs: Sequence[Path] = ()
    files: Sequence[Path] = ()
    skills: Sequence[Skill] = field(default_factory=list)
    canaries: Sequence[Skill] = field(default_factory=list)


def python_skills() -> list[Skill]:
    """The skills written in Python that ship with Switchboard."""
    return [DIGEST_SKILL]


def load_skills(
    dirs: Sequence[str | Path] = (),
    *,
    env: Mapping[str, str],
    include_python: bool = True,
) -> LoadedSkills:
    """Built-in YAML skills, skills from ``dirs`` and the Python skills (see
    :func:`load_registry`), without logging the issues."""
    folders = [Path(d) for d in dirs]
    result = load_spec_dirs(folders, env=env, include_builtin=True)
    return _assemble(result, folders, include_python=include_python)


def _assemble(result: LoadResult, folders: Sequence[Path], *, include_python: bool) -> LoadedSkills:
    skills = [Skill.from_spec(spec) for spec in result.specs.values()]
    if include_python:
        taken = {s.name for s in skills}
        skills.extend(s for s in python_skills() if s.name not in taken)
    canaries = [Skill.from_spec(spec) for spec in result.canaries.values()]
    return LoadedSkills(
        registry=SkillRegistry(skills, canaries),
        issues=list(result.issues),
        dirs=[builtin_dir(), *folders],
        files=list(result.files),
        skills=skills,
        canaries=canaries,
    )


def load_registry(
    dirs: Sequence[str | Path] = (),
    *,
    env: Mapping[str, str],
    include_python: bool = True,
) -> LoadedSkills:
    """Built-in YAML skills, skills from ``dirs`` and the Python skills.

    A spec with errors is left out and its issues returned, so one team's typo does not take
    the whole bot down; ``switchboard skills validate`` reports the same issues.
    """
    loaded = load_skills(dirs, env=env, include_python=include_python)
    for issue in loaded.issues:
        log.error("skill spec error: %s", issue)
    return loaded


_ADD_HINT = "set SWITCHBOARD_SKILLS_DIR to add a folder of your own"


def describe_sources(loaded: LoadedSkills, *, hint: str = _ADD_HINT) -> list[str]:
    """What was loaded and from where, for people: one line per folder, then one per
    skill (``refunds v2 (canary 10%)  ./skills/refunds-v2.yaml``).

    ``serve``, ``socket``, ``worker``, ``sandbox``, ``console`` and ``skills list`` print
    these, so "why isn't my skill there?" is answered before anyone asks.
    """
    builtin = builtin_dir()
    extra = [d for d in loaded.dirs if d != builtin]
    lines = [
        "skills from: built-ins"
        + (", " + ", ".join(str(d) for d in extra) if extra else f" only ({hint})")
    ]
    for skill in [*loaded.skills, *loaded.canaries]:
        where = "built-in" if _under(skill.source, builtin) or skill.spec is None else skill.source
        share = f" (canary {skill.canary:g}%)" if skill in loaded.canaries and skill.canary else ""
        lines.append(f"  {skill.label}{share}  {where}")
    lines.extend(f"  not loaded: {issue}" for issue in loaded.issues)
    return lines


def missing_skill(name: str, loaded: LoadedSkills) -> str:
    """Why ``name`` is not offered, saying where we looked: a spec of that name that did
    not load (with its first problem), or the folders searched."""
    for issue in loaded.issues:
        stem = Path(issue.file).name.split(".")[0]
        if stem == name:
            return f"there is no skill named {name!r}: {issue.file} did not load ({issue})"
    builtin = builtin_dir()
    extra = [str(d) for d in loaded.dirs if d != builtin]
    where = (
        "the built-in skills and " + ", ".join(extra)
        if extra
        else "only the built-in skills (SWITCHBOARD_SKILLS_DIR is not set)"
    )
    return f"there is no skill named {name!r}; looked in {where}. Try `switchboard skills list`"


def _under(source: str, folder: Path) -> bool:
    try:
        return Path(source).resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError):
        return False
