"""The image builds the way the chart expects (no Docker daemon here: the Dockerfile's
steps are checked against what they act on). hadolint lints it; the runtime lock it derives
keeps exactly what the app needs at run time; it copies every package the distribution ships;
its user, port and log format are the chart's."""

from __future__ import annotations

import re
import subprocess
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.conftest import CHART, HADOLINT, ROOT, need

DOCKERFILE = (ROOT / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUNTIME_EXTRAS = ("anthropic", "ollama")  # the provider extras the lock (and image) carry
# In the image although no requirement asks for them at run time, each for a reason.
KEPT_ON_PURPOSE = {
    "tzdata": "zoneinfo's IANA zones (schedules' --tz) whatever the base image ships"
}


def test_hadolint_is_clean() -> None:
    hadolint = need(HADOLINT)
    result = subprocess.run(
        [str(hadolint), "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _lock_names() -> set[str]:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    return {
        canonicalize_name(line.split("==")[0])
        for line in lines
        if "==" in line and not line.startswith(" ")
    }


def _runtime_lock() -> set[str]:
    """The lock filtered by the Dockerfile's own grep -vE expression."""
    match = re.search(r"grep -vE '([^']+)' requirements\.lock > runtime\.lock", DOCKERFILE)
    assert match, "the Dockerfile no longer derives runtime.lock with grep -vE"
    dropped = re.compile(match.group(1).replace("==", "=="))
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    return {
        canonicalize_name(line.split("==")[0])
        for line in lines
        if "==" in line and not line.startswith(" ") and not dropped.match(line)
    }


# The lock is compiled for Python 3.11 as a whole: judge markers for its first release too.
_ENVIRONMENTS = ({}, {"python_full_version": "3.11.0", "python_version": "3.11"})


def _applies(req: Requirement, extras: frozenset[str]) -> bool:
    if req.marker is None:
        return True
    return any(
        req.marker.evaluate({**env, "extra": extra})
        for env in _ENVIRONMENTS
        for extra in {"", *extras}
    )


def _closure(requirements: list[str]) -> set[str]:
    """Every distribution ``requirements`` pull in (markers evaluated, extras followed)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(Requirement(r), frozenset[str]()) for r in requirements]
    while todo:
        req, parent_extras = todo.pop()
        if not _applies(req, parent_extras):
            continue
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        todo += [(Requirement(sub), key[1]) for sub in metadata.distribution(key[0]).requires or []]
    return {name for name, _ in seen}


def test_runtime_lock_keeps_exactly_what_the_app_needs() -> None:
    project = PYPROJECT["project"]
    wanted = list(project["dependencies"])
    for extra in RUNTIME_EXTRAS:
        wanted += project["optional-dependencies"][extra]
    needed = _closure(wanted) & _lock_names()
    runtime = _runtime_lock()
    assert needed - runtime == set(), "the image drops packages the app needs at run time"
    extra = runtime - needed - set(KEPT_ON_PURPOSE)
    assert extra == set(), "the image installs dev-only packages (extend its grep -vE)"


def test_image_copies_every_package_the_distribution_ships() -> None:
    shipped = {
        p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = set(re.findall(r"^COPY (\w+) \./\1$", DOCKERFILE, re.M))
    assert copied == shipped


def test_image_user_port_and_log_format_match_the_chart() -> None:
    import yaml

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    uid = values["podSecurityContext"]["runAsUser"]
    assert re.search(
        rf"^USER {uid}:{values['podSecurityContext']['runAsGroup']}$", DOCKERFILE, re.M
    )
    assert f"--uid {uid}" in DOCKERFILE and values["containerSecurityContext"]["runAsUser"] == uid
    assert re.search(rf"^EXPOSE {values['ports']['http']}$", DOCKERFILE, re.M)
    assert f"PORT={values['ports']['http']}" in DOCKERFILE
    assert "SWITCHBOARD_LOG_FORMAT=json" in DOCKERFILE and values["config"]["logFormat"] == "json"
    assert 'CMD ["switchboard", "serve"]' in DOCKERFILE
