"""Policies as tests, over every value set: hardened containers with limits and probes, no
`latest`, PDB and spread for every multi-replica role, a NetworkPolicy for every role, the
metadata server out of the workers' reach; then checkov's Kubernetes checks as a second
opinion."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import CHECKOV, VALUE_SET_NAMES, need, pod_specs, role_of

METADATA_SERVER = ipaddress.ip_address("169.254.169.254")
ROLES = {"ingress", "socket", "worker", "scheduler", "migrate", "sqlproxy"}


def _all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def _replicas(obj: dict[str, Any], objects: list[dict[str, Any]]) -> int:
    """The least number of replicas a Deployment runs (an autoscaler's minimum)."""
    name = obj["metadata"]["name"]
    for other in objects:
        target = other.get("spec", {}).get("scaleTargetRef", {}).get("name")
        if target == name and other["kind"] == "HorizontalPodAutoscaler":
            return int(other["spec"]["minReplicas"])
        if target == name and other["kind"] == "ScaledObject":
            return int(other["spec"]["minReplicaCount"])
    return int(obj["spec"].get("replicas", 1))


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    match = selector.get("matchLabels", {})
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    for expr in selector.get("matchExpressions", []):
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


@pytest.mark.parametrize("name", VALUE_SET_NAMES)
def test_containers_are_hardened_with_limits_and_probes(
    rendered: dict[str, Any], name: str
) -> None:
    problems = []
    for where, spec in pod_specs(rendered[name]):
        pod = spec.get("securityContext", {})
        if not (
            pod.get("runAsNonRoot")
            and pod.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        ):
            problems.append(f"{where}: pod not non-root with seccomp RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: mounts a service-account token")
        for c in _all_containers(spec):
            sc = c.get("securityContext", {})
            label = f"{where}/{c['name']}"
            if not (sc.get("runAsNonRoot") and sc.get("runAsUser", 0) > 0):
                problems.append(f"{label}: may run as root")
            if (
                sc.get("readOnlyRootFilesystem") is not True
                or sc.get("allowPrivilegeEscalation") is not False
            ):
                problems.append(f"{label}: writable root or privilege escalation")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{label}: capabilities not dropped")
            limits = c.get("resources", {}).get("limits", {})
            if not {"cpu", "memory"} <= set(limits) or not c.get("resources", {}).get("requests"):
                problems.append(f"{label}: no cpu/memory limits and requests")
            image = c["image"]
            if image.endswith(":latest") or (
                "@" not in image and ":" not in image.rsplit("/", 1)[-1]
            ):
                problems.append(f"{label}: image {image} is latest or untagged")
            long_running = c in spec["containers"] and spec.get("restartPolicy") != "Never"
            long_running |= c.get("restartPolicy") == "Always"  # a native sidecar
            if long_running and not all(
                c.get(p) for p in ("startupProbe", "readinessProbe", "livenessProbe")
            ):
                problems.append(f"{label}: missing a startup, readiness or liveness probe")
        if any(c["name"] == "switchboard" for c in spec["containers"]):
            mounts = {m["mountPath"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
            if "/tmp" not in mounts:
                problems.append(f"{where}: no writable /tmp under a read-only root")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", VALUE_SET_NAMES)
def test_every_multi_replica_role_has_a_pdb_and_spreads(
    rendered: dict[str, Any], name: str
) -> None:
    objects = rendered[name]
    pdbs = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    problems = []
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        labels = obj["spec"]["template"]["metadata"]["labels"]
        replicas = _replicas(obj, objects)
        covering = [p for p in pdbs if _selects(p["spec"]["selector"], labels)]
        if len(covering) != 1:
            problems.append(f"{obj['metadata']['name']}: {len(covering)} PDBs")
            continue
        pdb = covering[0]["spec"]
        if replicas > 1:
            if not 1 <= pdb.get("minAvailable", 0) < replicas:
                problems.append(
                    f"{obj['metadata']['name']}: PDB minAvailable must be in [1, {replicas})"
                )
            spread = obj["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
            keys = {c["topologyKey"] for c in spread if _selects(c["labelSelector"], labels)}
            if not {"topology.kubernetes.io/zone", "kubernetes.io/hostname"} <= keys:
                problems.append(f"{obj['metadata']['name']}: not spread over zones and nodes")
        elif pdb.get("maxUnavailable") != 1:
            problems.append(
                f"{obj['metadata']['name']}: one replica; its PDB must not block drains"
            )
    assert not problems, "\n".join(problems)


def _policies_for(labels: dict[str, str], objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        o
        for o in objects
        if o["kind"] == "NetworkPolicy" and _selects(o["spec"]["podSelector"], labels)
    ]


def _egress_reaches(policies: list[dict[str, Any]], ip: ipaddress.IPv4Address) -> list[str]:
    """Egress rules of ``policies`` that let a pod reach ``ip`` (on any port)."""
    found = []
    for policy in policies:
        for rule in policy["spec"].get("egress", []):
            peers = rule.get("to")
            if not peers:
                found.append(f"{policy['metadata']['name']}: a rule to everywhere")
                continue
            for peer in peers:
                block = peer.get("ipBlock")
                if (
                    block
                    and ip in ipaddress.ip_network(block["cidr"])
                    and not any(ip in ipaddress.ip_network(e) for e in block.get("except", []))
                ):
                    found.append(f"{policy['metadata']['name']}: {block}")
    return found


@pytest.mark.parametrize("name", VALUE_SET_NAMES)
def test_every_role_has_a_network_policy_and_workers_cannot_reach_the_metadata_server(
    rendered: dict[str, Any], name: str
) -> None:
    objects = rendered[name]
    problems = []
    for obj in objects:
        if obj["kind"] not in {"Deployment", "Job"}:
            continue
        labels = obj["spec"]["template"]["metadata"]["labels"]
        policies = _policies_for(labels, objects)
        role = role_of(obj)
        if not policies:
            problems.append(f"{role}: no NetworkPolicy")
            continue
        if not all({"Ingress", "Egress"} <= set(p["spec"]["policyTypes"]) for p in policies):
            problems.append(f"{role}: a policy that leaves one direction open")
        if role == "worker" and (reach := _egress_reaches(policies, METADATA_SERVER)):
            problems.append(f"worker reaches the metadata server: {reach}")
        if role == "ingress":
            ports = {
                p["port"]
                for p in policies
                for r in p["spec"]["ingress"]
                for p in r.get("ports", [])
            }
            if not ports <= {"http", "metrics"}:
                problems.append(f"ingress accepts traffic on {ports}")
    assert not problems, "\n".join(problems)
    roles = {role_of(o) for o in objects if o["kind"] == "NetworkPolicy"}
    assert roles <= ROLES


def test_the_metadata_check_can_fail(rendered: dict[str, Any]) -> None:
    """Negative control: an allow-all rule, or a /0 without the link-local cut-out, is caught."""
    policy = next(
        o for o in rendered["production"] if o["kind"] == "NetworkPolicy" and role_of(o) == "worker"
    )
    assert not _egress_reaches([policy], METADATA_SERVER)
    opened = json.loads(json.dumps(policy))
    opened["spec"]["egress"].append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]})
    assert _egress_reaches([opened], METADATA_SERVER)
    opened["spec"]["egress"][-1] = {"ports": [{"port": 80}]}
    assert _egress_reaches([opened], METADATA_SERVER)


# checkov checks that do not fit this chart, each with the reason. Everything else must pass.
CHECKOV_SKIPS = {
    "CKV_K8S_43": "production pins a digest (examples/production.yaml); a tag is allowed elsewhere",
    "CKV_K8S_15": "pullPolicy IfNotPresent: Artifact Registry tags are immutable; digests in prod",
    "CKV_K8S_35": "secrets as env vars: the app reads its configuration from the environment only",
}


def test_checkov_kubernetes_checks_pass(rendered: dict[str, Any], tmp_path: Any) -> None:
    checkov = need(CHECKOV)
    for name, objects in rendered.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump_all(objects))
    result = subprocess.run(
        [
            str(checkov),
            "--directory",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--quiet",
            "--compact",
            "--output",
            "json",
            "--skip-check",
            ",".join(CHECKOV_SKIPS),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})"
        for report in reports
        for c in report.get("results", {}).get("failed_checks", [])
    ]
    assert not failed, "\n".join(sorted(set(failed)))
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert passed > 100, f"checkov passed only {passed} checks: did it read the manifests?"
