"""The chart and the app agree: what the chart runs, sets and scrapes, the app has.

Every environment variable the chart sets is one the settings class reads (or one a provider
package reads, as design.md says for ``OPENAI_*`` and friends); every command line it runs
parses in the app's CLI; every metric (and label) a KEDA trigger or an alert queries is one
the app exports; every probe path answers on a real ``switchboard serve`` started with the
chart's own environment.

The app's side comes from ONE function, :func:`app_contract`, because its parts are moving:
the CLI and settings from ``bot/`` to ``switchboard/`` (branch arch-root), the worker role
and the queue metrics from issue #14 (branch scale-queue), the audit key from issue #18. The
checks that need what those branches add are ``xfail(strict=True)``: they turn into failures
(XPASS) the day the contract grows, and the integrator then deletes their entry in
:data:`NOT_YET_BUILT`.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _reset_postgres, run_sync
from tests.deploy.conftest import CHART, HELM, ROOT, need, pod_specs, render, role_of, value_sets
from tests.processes import free_port as _free_port


@dataclass(frozen=True)
class AppContract:
    """What the app offers the chart."""

    settings_env: frozenset[str]
    """Variables the settings class reads (its field aliases)."""
    cli: Any
    """The root ``switchboard`` command."""
    metrics: dict[str, frozenset[str]]
    """Exported sample names (``_total``, ``_bucket``… included) -> their label names."""
    provider_packages: tuple[str, ...]
    """Packages that read provider variables (``OPENAI_API_KEY``…) themselves."""


def _first_module(*names: str) -> Any:
    for name in names:
        if importlib.util.find_spec(name.rpartition(".")[0] or name) is not None:
            try:
                return importlib.import_module(name)
            except ModuleNotFoundError:
                continue
    raise ModuleNotFoundError(f"none of {names} can be imported")


def app_contract() -> AppContract:
    """The app's contract, read from the app itself. The ONE place to adapt when modules move:
    the composition root (``switchboard.*``) first, the pre-#13 layout (``bot.*``) second."""
    settings_mod = _first_module("switchboard.settings", "bot.settings")
    cli_mod = _first_module("switchboard.cli", "bot.cli")
    metrics_mod = _first_module("switchboard.metrics", "bot.metrics")
    import typer

    settings_env = frozenset(
        (info.alias or name).upper() for name, info in settings_mod.Settings.model_fields.items()
    )
    registry = metrics_mod.Metrics().registry
    metrics: dict[str, set[str]] = {}
    for family in registry.collect():
        labels: set[str] = set()
        for collector_labels in _family_labels(registry, family.name):
            labels |= collector_labels
        for suffix in ("", "_total", "_bucket", "_count", "_sum", "_created"):
            metrics.setdefault(family.name + suffix, set()).update(labels)
        metrics[family.name + "_bucket"].add("le")
    return AppContract(
        settings_env=settings_env,
        cli=typer.main.get_command(cli_mod.app),
        metrics={name: frozenset(labels) for name, labels in metrics.items()},
        provider_packages=(
            "openai",
            "langchain_openai",
            "anthropic",
            "langchain_anthropic",
            "langsmith",
        ),
    )


def _family_labels(registry: Any, family: str) -> Iterator[set[str]]:
    """Label names of a family, read from its collector (a family with no samples yet has
    none to read them from)."""
    for collector in list(registry._collector_to_names):  # prometheus_client keeps no public map
        names = registry._collector_to_names[collector]
        if family in names or any(n.startswith(family + "_") for n in names):
            yield set(getattr(collector, "_labelnames", ()))


# What the chart uses that no branch on main has yet: the reason names the issue that adds it.
NOT_YET_BUILT: dict[str, str] = {}


def _param(key: str, value: Any) -> Any:
    reason = NOT_YET_BUILT.get(key)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(value, id=key.split(":", 1)[1], marks=marks)


# -- What the chart uses, read from its renders (at collection time, to parametrize) -------


def _all_objects() -> list[dict[str, Any]]:
    if not HELM.is_file():
        return []
    with tempfile.TemporaryDirectory() as tmp:
        return [obj for s in value_sets(Path(tmp)) for obj in render(s.files)]


_OBJECTS = _all_objects()
_NO_HELM = [pytest.param(None, id="helm-missing")]


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def _switchboard_containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for obj in _OBJECTS:
        if obj["kind"] in {"Deployment", "Job"}:
            for container in _containers(obj):
                if container.get("command", [""])[0] == "switchboard":
                    yield obj, container


def _env_names() -> list[str]:
    return sorted({e["name"] for _, c in _switchboard_containers() for e in c.get("env", [])})


def _command_key(argv: list[str]) -> str:
    key = argv[1]
    if "--check" in argv:
        key += " --check"
    return key


def _commands() -> list[tuple[str, ...]]:
    return sorted({tuple(c["command"]) for _, c in _switchboard_containers()})


_METRIC = re.compile(r"\b(switchboard_[a-z0-9_]+)(\{([^}]*)\})?")


def _queries() -> list[str]:
    out = []
    for obj in _OBJECTS:
        if obj["kind"] == "ScaledObject":
            out += [
                t["metadata"]["query"] for t in obj["spec"]["triggers"] if t["type"] == "prometheus"
            ]
        if obj["kind"] == "Rules":
            out += [r["expr"] for g in obj["spec"]["groups"] for r in g["rules"]]
    return out


def _metric_uses() -> dict[str, set[str]]:
    """Metric name -> label names its selectors use, over every query the chart renders."""
    uses: dict[str, set[str]] = {}
    for query in _queries():
        for match in _METRIC.finditer(query):
            labels = {
                m.split("=")[0].strip().rstrip("!~")
                for m in (match.group(3) or "").split(",")
                if "=" in m
            }
            uses.setdefault(match.group(1), set()).update(labels)
    return uses


def _base_metric(name: str) -> str:
    return re.sub(r"_(total|bucket|count|sum)$", "", name)


# Labels Managed Prometheus attaches to every scraped series (not the app's own).
TARGET_LABELS = {
    "namespace",
    "pod",
    "container",
    "job",
    "instance",
    "cluster",
    "location",
    "project_id",
    "role",
}


@pytest.fixture(scope="module")
def contract() -> AppContract:
    return app_contract()


def test_the_contract_reads_the_app(contract: AppContract) -> None:
    """Positive control: the contract is not empty, so the checks below can fail."""
    assert {
        "DATABASE_URL",
        "REDIS_URL",
        "SLACK_BOT_TOKEN",
        "PORT",
        "METRICS_PORT",
    } <= contract.settings_env
    assert "switchboard_slack_requests_total" in contract.metrics
    assert "outcome" in contract.metrics["switchboard_slack_requests_total"]
    assert _parse(contract, ["switchboard", "serve"]) is None
    assert _parse(contract, ["switchboard", "serve", "--no-such-flag"]) is not None
    assert _parse(contract, ["switchboard", "no-such-command"]) is not None


@pytest.mark.parametrize("name", [_param(f"env:{n}", n) for n in _env_names()] or _NO_HELM)
def test_every_env_var_the_chart_sets_is_read_by_the_app(
    contract: AppContract, name: str | None
) -> None:
    if name is None:
        need(HELM)
    if name in contract.settings_env:
        return
    # design.md: provider variables are read by the provider packages, not by Settings.
    readers = [pkg for pkg in contract.provider_packages if _package_mentions(pkg, name)]
    assert readers, (
        f"{name}: the chart sets it, but neither Settings nor a provider package reads it"
    )


def _package_mentions(package: str, text: str) -> bool:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return False
    for folder in spec.submodule_search_locations:
        for path in Path(folder).rglob("*.py"):
            if text in path.read_text(encoding="utf-8", errors="ignore"):
                return True
    return False


def _parse(contract: AppContract, argv: list[str]) -> str | None:
    """None when ``argv`` parses in the CLI (nothing runs), else the usage error.

    Duck-typed on click's API: typer vendors its own copy of click, whose classes are not
    ``click``'s."""
    command: Any = contract.cli
    args = argv[1:]
    ctx = command.context_class(command, info_name=argv[0])
    try:
        while hasattr(command, "get_command"):  # a group
            if not args:
                return "no subcommand"
            sub = command.get_command(ctx, args[0])
            if sub is None:
                return f"no command {args[0]!r}"
            command, ctx = sub, sub.context_class(sub, info_name=args[0], parent=ctx)
            args = args[1:]
        command.make_context(ctx.info_name, list(args), parent=ctx.parent)
    except Exception as exc:
        if not hasattr(exc, "format_message"):  # not a usage error: a real failure
            raise
        return str(exc.format_message())
    return None


@pytest.mark.parametrize(
    "argv", [_param(f"cmd:{_command_key(list(c))}", list(c)) for c in _commands()] or _NO_HELM
)
def test_every_command_the_chart_runs_exists_in_the_cli(
    contract: AppContract, argv: list[str] | None
) -> None:
    if argv is None:
        need(HELM)
    error = _parse(contract, argv)
    assert error is None, f"{' '.join(argv)}: {error}"


@pytest.mark.parametrize(
    "metric", [_param(f"metric:{_base_metric(m)}", m) for m in sorted(_metric_uses())] or _NO_HELM
)
def test_every_metric_a_trigger_or_alert_queries_is_exported(
    contract: AppContract, metric: str | None
) -> None:
    if metric is None:
        need(HELM)
    assert metric in contract.metrics, f"{metric}: queried by the chart, not exported by the app"
    unknown = _metric_uses()[metric] - contract.metrics[metric] - TARGET_LABELS
    assert not unknown, (
        f"{metric}: the chart selects on labels the app does not set: {sorted(unknown)}"
    )


def test_queries_are_found(contract: AppContract) -> None:
    """Positive control for the metric check: the production values render KEDA triggers and
    alerts whose queries name metrics."""
    if not _OBJECTS:
        need(HELM)
    assert {"switchboard_queue_depth", "switchboard_slack_requests_total"} <= set(_metric_uses())


# -- A real process with the chart's environment ------------------------------------------------


_TEST_SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-chart-test",
    "SLACK_SIGNING_SECRET": "chart-test-signing-secret",
    "SLACK_APP_TOKEN": "xapp-chart-test",
    "SWITCHBOARD_AUDIT_KEY": "0" * 64,
}


@dataclass
class Started:
    process: subprocess.Popen[str]
    ports: dict[str, int]
    container: dict[str, Any]
    log: Path

    def get(self, port: str, path: str) -> int:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.ports[port]}{path}", timeout=3
            ) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return exc.code


def _role_container(role: str) -> dict[str, Any]:
    for obj in render():
        if obj["kind"] == "Deployment" and role_of(obj) == role:
            return next(
                c
                for c in obj["spec"]["template"]["spec"]["containers"]
                if c["name"] == "switchboard"
            )
    raise AssertionError(f"the default values render no {role} Deployment")


def _start(role: str, tmp: Path, *, within: float, database_url: str | None = None) -> Started:
    """Run the role's container command with its rendered env: secrets replaced by test
    values, the database by a SQLite file (or ``database_url``: a worker needs PostgreSQL),
    Redis by the in-process default, ports by free loopback ports."""
    container = _role_container(role)
    ports = {"http": _free_port(), "metrics": _free_port()}
    # PYTHONPATH: this checkout's packages, whichever checkout the venv was installed from.
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp), "PYTHONPATH": str(ROOT)}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item["name"] in _TEST_SECRETS:
            env[item["name"]] = _TEST_SECRETS[item["name"]]
    env |= {
        "HOST": "127.0.0.1",
        "PORT": str(ports["http"]),
        "METRICS_PORT": str(ports["metrics"]),
        "DATABASE_URL": database_url or f"sqlite+aiosqlite:///{tmp}/switchboard.db",
        "SLACK_API_URL": f"http://127.0.0.1:{_free_port()}/api/",  # nothing listens: no Slack
    }
    env.pop("REDIS_URL", None)
    if env.get("SWITCHBOARD_INPROCESS_WORKERS") == "0":
        # A receive-only role needs the shared PostgreSQL queue; with SQLite standing in
        # for the database the queue lives in the process, so it runs its own workers.
        env["SWITCHBOARD_INPROCESS_WORKERS"] = "1"
    log = tmp / f"{role}.log"
    argv = [str(Path(sys.executable).parent / container["command"][0]), *container["command"][1:]]
    process = subprocess.Popen(
        argv, env=env, cwd=tmp, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True
    )
    started = Started(process, ports, container, log)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if started.get("http", "/healthz") == 200:
                return started
        except OSError:
            time.sleep(0.2)
    _stop(started)
    raise AssertionError(
        f"`{' '.join(container['command'])}` did not serve /healthz within {within:.0f} s:\n"
        + log.read_text()[-2000:]
    )


def _stop(started: Started) -> None:
    if started.process.poll() is None:
        started.process.terminate()
        try:
            started.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            started.process.kill()
            started.process.wait()


@pytest.fixture(scope="module")
def ingress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    need(HELM)
    started = _start(
        "ingress", tmp_path_factory.mktemp("ingress"), within=90
    )  # a loaded CI machine
    yield started
    _stop(started)


def _probe_targets(container: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (probe["httpGet"]["port"], probe["httpGet"]["path"])
        for key in ("startupProbe", "readinessProbe", "livenessProbe")
        if (probe := container.get(key)) and "httpGet" in probe
    ]


def test_ingress_probes_answer_on_a_real_serve(ingress: Started) -> None:
    targets = _probe_targets(ingress.container)
    assert {path for _, path in targets} == {"/healthz", "/readyz"}
    for port, path in targets:
        assert ingress.get(port, path) == 200, f"{path} on port {port}"


def test_metrics_are_on_the_metrics_port_only(ingress: Started) -> None:
    """PodMonitoring scrapes `metrics`; the Service exposes only `http`, which must not."""
    assert ingress.get("metrics", "/metrics") == 200
    assert ingress.get("http", "/metrics") == 404


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "role", [_param("probe:worker", "worker"), _param("probe:scheduler", "scheduler")]
)
def test_worker_and_scheduler_probes_answer(
    role: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    need(HELM)
    database_url = None
    if role == "worker":  # `switchboard worker` runs on PostgreSQL only (the durable queue)
        database_url = request.getfixturevalue("postgres_url")
        run_sync(_migrated(database_url))
    # serve is up in ~5 s on an idle machine; the bound is for a loaded one.
    started = _start(role, tmp_path, within=60, database_url=database_url)
    try:
        targets = _probe_targets(started.container)
        assert {path for _, path in targets} == {"/healthz", "/readyz"}
        for port, path in targets:
            # Ready may follow alive by a few seconds (a worker is ready once its queue
            # workers run); the kubelet keeps probing, and so does this.
            deadline = time.monotonic() + (60 if path == "/readyz" else 0)
            while started.get(port, path) != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert started.get(port, path) == 200, f"{role}: {path} on port {port}"
        assert started.get("metrics", "/metrics") == 200  # what PodMonitoring scrapes
    finally:
        _stop(started)


async def _migrated(url: str) -> None:
    from storage.runqueue import ensure_queue_schema, libpq_dsn
    from storage.sql import upgrade

    await _reset_postgres(url)
    await upgrade(url)
    await ensure_queue_schema(libpq_dsn(url))


def test_logs_are_json_with_severity_for_cloud_logging(ingress: Started) -> None:
    lines = [line for line in ingress.log.read_text().splitlines() if line.strip()]
    assert lines, "serve logged nothing"
    for line in lines:
        record = json.loads(line)
        assert {"severity", "message"} <= set(record), line


# -- URL forms the docs prescribe --------------------------------------------------------------


def test_memorystore_url_form_reaches_redis_with_tls_and_the_mounted_ca() -> None:
    """values.yaml and docs/deploy.md tell operators to write REDIS_URL this way; the app's
    Redis client must turn it into a verified TLS connection with the CA the chart mounts."""
    from storage.redis import create_redis

    ca = "/etc/switchboard/redis-ca/ca.pem"
    assert ca in (CHART / "values.yaml").read_text()
    assert f"ssl_ca_certs={ca}" in (ROOT / "docs" / "deploy.md").read_text()
    client = create_redis(f"rediss://:auth-string@10.0.0.3:6378/0?ssl_ca_certs={ca}")
    pool = client.connection_pool
    assert pool.connection_class.__name__ == "SSLConnection"
    assert pool.connection_kwargs["ssl_ca_certs"] == ca
    assert pool.connection_kwargs["password"] == "auth-string"


def test_cloud_sql_iam_url_is_accepted_and_names_the_iam_user(contract: AppContract) -> None:
    """The IAM database user contains an @; the chart's database.url form percent-encodes it."""
    from sqlalchemy.engine import make_url

    settings_mod = _first_module("switchboard.settings", "bot.settings")
    url = "postgresql+asyncpg://sb%40acme.iam@127.0.0.1:5432/switchboard"
    settings = settings_mod.Settings.from_env(
        {"DATABASE_URL": url, "SWITCHBOARD_AUDIT_KEY": "0" * 64}
    )
    parsed = make_url(settings.database_url)
    assert (parsed.username, parsed.password, parsed.host) == ("sb@acme.iam", None, "127.0.0.1")


def test_container_ports_match_the_env_the_app_reads() -> None:
    if not _OBJECTS:
        need(HELM)
    for obj in _OBJECTS:
        if obj["kind"] != "Deployment" or role_of(obj) == "sqlproxy":
            continue
        for name, spec in pod_specs([obj]):
            main = next(c for c in spec["containers"] if c["name"] == "switchboard")
            env = {e["name"]: e.get("value") for e in main["env"]}
            ports = {p["name"]: str(p["containerPort"]) for p in main["ports"]}
            assert ports == {"http": env["PORT"], "metrics": env["METRICS_PORT"]}, name
