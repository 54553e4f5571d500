"""Every object the chart renders is valid: Kubernetes kinds against the Kubernetes 1.32
schemas (strict: unknown fields are errors), custom resources against the validators of
registry packages (made strict here) or our own schemas (see crds/README.md), and bad
values are refused by ``values.schema.json`` with a clear message."""

from __future__ import annotations

import copy
import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.conftest import (
    CHART,
    CRD_MODELS,
    KUBE_VERSION,
    NODE,
    VALUE_SET_NAMES,
    ValueSet,
    helm,
    need,
    render,
    template_args,
)

CRDS = Path(__file__).parent / "crds"
VALIDATE_CRS = Path(__file__).parent / "validate_crs.mjs"
# Kinds checked by the registry packages' validators (validate_crs.mjs; see crds/README.md).
REGISTRY_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("external-secrets.io/v1", "ExternalSecret"),
}


@cache
def own_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> our own JSON Schema, for kinds no registry package covers."""
    out = {}
    for path in sorted(CRDS.glob("*.schema.json")):
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        props = schema["properties"]
        out[(props["apiVersion"]["const"], props["kind"]["const"])] = schema
    return out


def registry_errors(objects: list[dict[str, Any]]) -> list[dict[str, list[str]]]:
    """For each object, ``{"schema": [...], "unknown": [...]}`` from validate_crs.mjs: what
    the package's validator refuses, and the fields it does not declare."""
    need(NODE)
    need(CRD_MODELS)
    result = subprocess.run(
        [str(NODE), str(VALIDATE_CRS), str(CRD_MODELS)],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"validate_crs.mjs failed:\n{result.stderr}")
    out: list[dict[str, list[str]]] = json.loads(result.stdout)
    assert len(out) == len(objects), result.stdout
    return out


def all_validation_errors(objects: list[dict[str, Any]]) -> list[str]:
    """``validation_errors`` of every object, with one node run for all the registry kinds."""
    registry = [o for o in objects if (o.get("apiVersion"), o.get("kind")) in REGISTRY_KINDS]
    found = registry_errors(registry) if registry else []
    errors = []
    for obj, result in zip(registry, found, strict=True):
        errors += validation_errors(obj, registry_result=result)
    for obj in objects:
        if (obj.get("apiVersion"), obj.get("kind")) not in REGISTRY_KINDS:
            errors += validation_errors(obj)
    return errors


def validation_errors(
    obj: dict[str, Any], *, registry_result: dict[str, list[str]] | None = None
) -> list[str]:
    """Every problem with ``obj``; an unknown kind is itself a problem (nothing skipped)."""
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    if key in REGISTRY_KINDS:
        found = registry_result or registry_errors([obj])[0]
        return [f"{where}: {e}" for e in found["schema"] + found["unknown"]] + keda_webhook_errors(
            obj
        )
    schema = own_schemas().get(key)
    if schema is not None:
        validator = jsonschema.Draft202012Validator(schema)
        return [
            f"{where}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(obj)
        ]
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [
            f"{where}: no Kubernetes {KUBE_VERSION} schema, no registry validator and no"
            " schema in tests/deploy/crds"
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
    errors = all_validation_errors(objects)
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
    assert {kind for _, kind in REGISTRY_KINDS | own_schemas().keys()} >= {
        "ScaledObject",
        "TriggerAuthentication",
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
    monitoring = _first(production, "PodMonitoring")
    monitoring["spec"]["endpoints"][0]["interval"] = "thirty seconds"
    assert validation_errors(monitoring)
    rules = _first(production, "Rules")
    rules["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    assert validation_errors(rules)
    rules = _first(production, "Rules")
    del rules["spec"]["groups"][0]["rules"][0]["expr"]
    assert validation_errors(rules)


def test_registry_validators_are_made_strict(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The packages' validators accept undeclared fields (their "schema" list stays empty);
    validate_crs.mjs's read tracking is what refuses them, in every registry kind, while maps
    (labels, annotations, trigger metadata) take any key."""
    production = rendered["production"]
    scaled = _first(production, "ScaledObject")
    scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behaviour"] = {}
    scaled["spec"]["triggers"][0]["metadata"]["anyKeyAtAll"] = "1"
    scaled["metadata"]["labels"]["any-label"] = "x"
    auth = _first(production, "TriggerAuthentication")
    auth["spec"]["podIdentity"]["providr"] = "gcp"
    secret = _first(production, "ExternalSecret")
    secret["spec"]["target"]["creationPolicyy"] = "Owner"
    found = registry_errors([scaled, auth, secret])
    assert [f["schema"] for f in found] == [[], [], []]
    assert [f["unknown"] for f in found] == [
        ["/spec/advanced/horizontalPodAutoscalerConfig/behaviour: unknown field"],
        ["/spec/podIdentity/providr: unknown field"],
        ["/spec/target/creationPolicyy: unknown field"],
    ]
    # Positive control: the same objects, as rendered, are clean.
    kinds = ("ScaledObject", "TriggerAuthentication", "ExternalSecret")
    clean = registry_errors([_first(production, kind) for kind in kinds])
    assert clean == [{"schema": [], "unknown": []}] * 3


def test_registry_validators_refuse_wrong_types_and_missing_fields(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    production = rendered["production"]
    scaled = _first(production, "ScaledObject")
    scaled["spec"]["maxReplicaCount"] = "ten"
    del scaled["spec"]["scaleTargetRef"]
    errors = registry_errors([scaled])[0]["schema"]
    assert any("maxReplicaCount" in e for e in errors), errors
    assert any("scaleTargetRef" in e for e in errors), errors
    unknown_kind = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledJob", "metadata": {}}
    assert registry_errors([unknown_kind])[0]["schema"]


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
