"""Hot reload of skill specs: watch the spec folders, swap the registry when they change.

``serve``, ``socket``, ``worker`` and ``sandbox`` run :meth:`SkillReloader.watch` over
``SWITCHBOARD_SKILLS_DIR`` (with ``watchfiles``). On a change the reloader loads every spec
again and swaps the new set into the live :class:`~skills.registry.SkillRegistry` in one
assignment, so:

* a valid change is live on the next turn (within the debounce, about a second);
* a turn in flight finishes on the :class:`~skills.registry.Skill` (and the agent built for
  it) it started with - the runtime keys its agents by the definition, not the name;
* a file that no longer validates is *rejected*: its issues (``file:line field: problem``)
  are logged and kept in :attr:`SkillReloader.status`, and the skills it defined before keep
  serving in their previous version. Other files' changes still apply.

A deleted file removes its skills (that is a valid change).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import watchfiles

from skills.catalog import LoadedSkills, load_skills
from skills.registry import Skill, SkillRegistry
from skills.spec import SpecIssue

__all__ = ["ReloadStatus", "SkillReloader"]

log = logging.getLogger(f"switchboard.{__name__}")


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    """Where the registry stands after the last load: ``issues`` are the spec files that do
    not load (their previous version, if any, keeps serving), ``kept`` those versions."""

    generation: int
    at: datetime
    outcome: str  # "loaded" (start), "applied", "rejected" (nothing changed), "partial"
    issues: tuple[SpecIssue, ...] = ()
    kept: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.issues


ReloadObserver = Callable[[ReloadStatus], None]


def _resolved(path: str | Path) -> Path | None:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return None


@dataclass(slots=True)
class SkillReloader:
    """Reloads ``dirs`` into ``registry``; ``on_swap`` runs after each swap (the runtime
    drops agents of definitions that are gone), ``observers`` get every status."""

    registry: SkillRegistry
    dirs: Sequence[Path]
    env: Mapping[str, str]
    include_python: bool = True
    on_swap: list[Callable[[], None]] = field(default_factory=list)
    observers: list[ReloadObserver] = field(default_factory=list)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    debounce_ms: int = 400
    status: ReloadStatus = field(init=False)

    def __post_init__(self) -> None:
        self.status = ReloadStatus(
            generation=self.registry.generation, at=self.clock(), outcome="loaded"
        )

    def start_with(self, loaded: LoadedSkills) -> None:
        """Record the issues of the load the process started with (shown on the sandbox)."""
        self.status = ReloadStatus(
            generation=self.registry.generation,
            at=self.clock(),
            outcome="loaded",
            issues=tuple(loaded.issues),
        )

    def load(self) -> LoadedSkills:
        return load_skills(self.dirs, env=self.env, include_python=self.include_python)

    def reload(self) -> ReloadStatus:
        """Load every spec again and swap the result in; see the module docstring."""
        return self.apply(self.load())

    def apply(self, loaded: LoadedSkills) -> ReloadStatus:
        """Swap ``loaded`` in (keeping the previous versions of files that do not load).
        Runs on the event loop: the swap and the hooks never race a turn's lookups."""
        registry = self.registry
        old_stable = {n: registry.get(n) for n in registry.names()}
        old_canary = dict(registry.canaries())
        skills, canaries, kept = self._merge(loaded)
        changed = tuple(
            _changes(old_stable, {s.name: s for s in skills}, "")
            + _changes(old_canary, {s.name: s for s in canaries}, "canary ")
        )
        if changed:
            try:
                self.registry.replace(skills, canaries)
            except ValueError as exc:  # a kept version clashes with a new file: keep all old
                log.error("skill reload rejected: %s", exc)
                changed = ()
            else:
                for hook in self.on_swap:
                    hook()
        issues = tuple(loaded.issues)
        if issues and not changed:
            outcome = "rejected"
        elif issues:
            outcome = "partial"
        else:
            outcome = "applied"
        self.status = ReloadStatus(
            generation=self.registry.generation,
            at=self.clock(),
            outcome=outcome,
            issues=issues,
            kept=tuple(kept),
            changed=changed,
        )
        for label in changed:
            log.info("skill reloaded: %s", label)
        for issue in issues:
            log.error("skill spec rejected: %s", issue)
        for label in kept:
            log.warning("skill %s keeps serving its previous version", label)
        for observer in self.observers:
            try:
                observer(self.status)
            except Exception:  # an observer must never stop the reloads
                log.exception("skill reload observer failed")
        return self.status

    def _merge(self, loaded: LoadedSkills) -> tuple[list[Skill], list[Skill], list[str]]:
        """The new skills, plus - for each file that no longer loads - the versions it
        defined before, unless another file now defines them."""
        broken = {p for p in (_resolved(i.file) for i in loaded.issues) if p and p.is_file()}
        skills = {s.name: s for s in loaded.skills}
        canaries = {s.name: s for s in loaded.canaries}
        kept: list[str] = []
        if not broken:
            return list(skills.values()), list(canaries.values()), kept
        previous_stable = [self.registry.get(n) for n in self.registry.names()]
        previous_canary = list(self.registry.canaries().values())
        for old in previous_stable:
            if _resolved(old.source) in broken and old.name not in skills:
                skills[old.name] = old
                kept.append(old.label)
        for old in previous_canary:
            stable = skills.get(old.name)
            if (
                _resolved(old.source) in broken
                and stable is not None
                and old.name not in canaries
                and stable.version != old.version
            ):
                canaries[old.name] = old
                kept.append(old.label)
        return list(skills.values()), list(canaries.values()), kept

    def watched(self) -> list[Path]:
        """The folders to watch: the configured ones that exist (built-ins never change)."""
        return [d for d in self.dirs if d.is_dir()]

    async def watch(self, stop: asyncio.Event | None = None) -> None:
        """Reload on every change under the spec folders until ``stop`` is set (or the
        task is cancelled)."""
        folders = self.watched()
        if not folders:
            return
        log.info("watching skill folders for changes: %s", ", ".join(map(str, folders)))
        try:
            async for changes in watchfiles.awatch(
                *folders,
                watch_filter=_is_spec_change,
                debounce=self.debounce_ms,
                step=50,
                stop_event=stop,
                recursive=True,
            ):
                log.debug("skill folders changed: %d file(s)", len(changes))
                # Loading is file and CPU work (YAML, schema checks): off the event loop;
                # the swap itself happens on it.
                self.apply(await asyncio.to_thread(self.load))
        except Exception as exc:  # e.g. out of inotify watches: serving goes on
            log.error(
                "stopped watching the skill folders (%s: %s); restart to load spec changes",
                type(exc).__name__,
                exc,
            )


def _changes(before: Mapping[str, Skill], after: Mapping[str, Skill], prefix: str) -> list[str]:
    """``notes v1 → v2``, ``notes (edited)``, ``notes added``, ``notes removed``."""
    found: list[str] = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old is None and new is not None:
            found.append(f"{prefix}{new.label} added")
        elif new is None and old is not None:
            found.append(f"{prefix}{old.label} removed")
        elif old is not None and new is not None and old.key != new.key:
            if old.version != new.version:
                found.append(f"{prefix}{name} v{old.version or '-'} → v{new.version or '-'}")
            else:
                found.append(f"{prefix}{new.label} (edited)")
    return found


def _is_spec_change(change: watchfiles.Change, path: str) -> bool:
    name = Path(path).name
    # A Kubernetes ConfigMap volume updates by swapping its ``..data`` symlink at once:
    # reload on the swap too, not only on the files written before it.
    return name == "..data" or (name.endswith((".yaml", ".yml")) and not name.startswith("."))
