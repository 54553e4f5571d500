"""Loading a deployment's skills: the built-in YAML specs, the spec folders
(``SWITCHBOARD_SKILLS_DIR``) and the Python skills, into one :class:`SkillRegistry`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from skills.digest import DIGEST_SKILL
from skills.registry import Skill, SkillRegistry
from skills.spec import SpecIssue, load_spec_dirs

__all__ = ["LoadedSkills", "load_registry", "python_skills"]

log = logging.getLogger(f"switchboard.{__name__}")


@dataclass(frozen=True, slots=True)
class LoadedSkills:
    registry: SkillRegistry
    issues: Sequence[SpecIssue]


def python_skills() -> list[Skill]:
    """The skills written in Python that ship with Switchboard."""
    return [DIGEST_SKILL]


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
    result = load_spec_dirs([Path(d) for d in dirs], env=env, include_builtin=True)
    skills = [Skill.from_spec(spec) for spec in result.specs.values()]
    if include_python:
        taken = {s.name for s in skills}
        skills.extend(s for s in python_skills() if s.name not in taken)
    for issue in result.issues:
        log.error("skill spec error: %s", issue)
    return LoadedSkills(registry=SkillRegistry(skills), issues=list(result.issues))
