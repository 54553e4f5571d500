"""Every object the chart renders is valid: Kubernetes kinds against the Kubernetes 1.32
schemas (strict: unknown fields are errors), custom resources against their operators'
published CRDs, and bad values are refused by ``values.schema.json`` with a clear message."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import (
    CHART,
    KUBE_VERSION,
    VALUE_SET_NAMES,
    ValueSet,
    helm,
    render,
    template_args,
)

CRDS = Path(__file__).parent / "crds"


def _strict(schema: Any) -> Any:
    """A CRD's structural schema as a JSON Schema that refuses undeclared fields (an API
    server prunes them silently, or rejects them with fieldValidation=Strict)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        if schema.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> JSON Schema, for every served version of every CRD kept here."""
    out = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    schema = _strict(version["schema"]["openAPIV3Schema"])
                    # metadata is the API server's, not the CRD's: check only its shape.
                    schema["properties"]["metadata"] = {"type": "object"}
                    out[(f"{group}/{version['name']}", kind)] = schema
    return out


def validation_errors(obj: dict[str, Any]) -> list[str]:
    """Every problem with ``obj``; an unknown kind is itself a problem (nothing skipped)."""
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    schema = crd_schemas().get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if schema is not None:
        validator = jsonschema.Draft7Validator(schema)
        return [
            f"{where}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(obj)
        ] + keda_webhook_errors(obj)
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [
            f"{where}: no Kubernetes {KUBE_VERSION} schema and no CRD kept in tests/deploy/crds"
        ]
    except kubernetes_validate.ValidationError as exc:
        # It stops at the first error (a jsonschema.ValidationError underneath).
        return [f"{where}: {'.'.join(map(str, exc.absolute_path))}: {exc.message}"]
    return []


def keda_webhook_errors(obj: dict[str, Any]) -> list[str]:
    """What KEDA's admission webhook refuses and its CRD cannot say (v2.20
    ``CheckFallbackValid``): a fallback needs a trigger, other than cpu or memory, with an
    AverageValue target."""
    if obj.get("kind") != "ScaledObject" or "fallback" not in obj["spec"]:
        return []
    if any(
        t["type"] not in {"cpu", "memory"} and t.get("metricType", "AverageValue") == "AverageValue"
        for t in obj["spec"]["triggers"]
    ):
        return []
    return [f"ScaledObject/{obj['metadata']['name']}: fallback needs an AverageValue trigger"]


@pytest.mark.parametrize("name", VALUE_SET_NAMES)
def test_every_object_is_valid(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    objects = rendered[name]
    assert objects, f"{name} renders nothing"
    errors = [error for obj in objects for error in validation_errors(obj)]
    assert not errors, "\n".join(errors)


def test_custom_resources_are_validated_not_skipped(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    kinds = {obj["kind"] for objects in rendered.values() for obj in objects}
    assert {
        "ScaledObject",
        "TriggerAuthentication",
        "PodMonitoring",
        "Rules",
        "ExternalSecret",
    } <= kinds
    assert {kind for _, kind in crd_schemas()} >= {
        "ScaledObject",
        "PodMonitoring",
        "Rules",
        "ExternalSecret",
    }


def _first(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(o for o in objects if o["kind"] == kind))


def test_the_validators_can_fail(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Negative controls: a misspelt field, a wrong type, a bad enum, and KEDA's own rule."""
    production = rendered["production"]
    deployment = _first(production, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert validation_errors(deployment)
    deployment = _first(production, "Deployment")
    deployment["spec"]["replicas"] = "two"
    assert validation_errors(deployment)
    scaled = _first(production, "ScaledObject")
    scaled["spec"]["fallback"]["behavior"] = "sometimes"
    assert validation_errors(scaled)
    scaled = _first(production, "ScaledObject")
    scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behaviour"] = {}
    assert validation_errors(scaled)
    scaled = _first(production, "ScaledObject")
    for trigger in scaled["spec"]["triggers"]:
        trigger["metricType"] = "Value"
    assert validation_errors(scaled) == [
        f"ScaledObject/{scaled['metadata']['name']}: fallback needs an AverageValue trigger"
    ]
    monitoring = _first(production, "PodMonitoring")
    monitoring["spec"]["endpoints"][0]["intervall"] = "30s"
    assert validation_errors(monitoring)


def test_helm_lint_passes_on_every_value_set(sets: dict[str, ValueSet]) -> None:
    for name, value_set in sets.items():
        args = ["lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION]
        for path in value_set.files:
            args += ["--values", str(path)]
        result = helm(*args, check=False)
        assert result.returncode == 0, f"{name}:\n{result.stdout}\n{result.stderr}"


# -- values.schema.json refuses what it should, with a message naming the value ---------------

BAD_VALUES = [
    ("image.tag=latest", "image/tag"),
    ("worker.concurency=8", "concurency"),
    ("worker.autoscaling.mode=memory", "mode"),
    ("socket.replicas=2", "socket/replicas"),
    ("config.logFormat=xml", "logFormat"),
    ("config.extraEnv.SLACK_BOT_TOKEN=xoxb-1", "SLACK_BOT_TOKEN"),
    ("config.extraEnv.PORT=8080", "PORT"),
    ("database.url=postgresql+asyncpg://sb:hunter2@10.0.0.5:5432/sb", "database/url"),
    ("containerSecurityContext.readOnlyRootFilesystem=false", "readOnlyRootFilesystem"),
    ("podSecurityContext.runAsNonRoot=false", "runAsNonRoot"),
    ("networkPolicy.egress.extraCidrs[0]=169.254.169.254/32", "extraCidrs"),
    ("worker.resources.limits=null", "limits"),
]


@pytest.mark.parametrize(
    ("setting", "named"), BAD_VALUES, ids=[b[0].split("=")[0] for b in BAD_VALUES]
)
def test_schema_refuses_a_bad_value(setting: str, named: str) -> None:
    result = helm(*template_args((), "--set", setting), check=False)
    assert result.returncode != 0, f"--set {setting} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert named in result.stderr, result.stderr


def test_schema_accepts_the_same_settings_when_right() -> None:
    """Positive control: the same values, corrected, render."""
    for setting in (
        "image.tag=0.1.0",
        "worker.concurrency=8",
        "worker.autoscaling.mode=none",
        "socket.enabled=true",
        "config.logFormat=text",
        "config.extraEnv.SWITCHBOARD_USER_RATE=5/1m",
        "database.url=postgresql+asyncpg://sb%40p.iam@127.0.0.1:5432/sb",
        "networkPolicy.egress.extraCidrs[0]=10.1.2.0/24",
    ):
        helm(*template_args((), "--set", setting))


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("secrets.existingSecret=", "secrets never go in values"),
        ("cloudSql.enabled=true", "cloudSql.instanceConnectionName is required"),
        ("secrets.externalSecret.enabled=true", "migrations.useHelmHooks=true runs before"),
        ("worker.autoscaling.mode=keda", "serverAddress is required"),
    ],
)
def test_templates_refuse_inconsistent_values_with_a_message(setting: str, message: str) -> None:
    result = helm(*template_args((), "--set", setting), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_every_value_set_renders_with_the_examples_present() -> None:
    assert render((CHART / "examples" / "small.yaml",))
    assert render((CHART / "examples" / "production.yaml",))
