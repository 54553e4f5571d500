"""``switchboard scheduler`` and ``switchboard worker`` serve the probes the chart points at.

Real processes (subprocesses of the CLI), each on a PRIVATE ``redis-server`` this module
starts on a free port and kills: readiness must follow Redis going away and coming back,
the scheduler must report (body and ``switchboard_scheduler_leader``) who leads, and a
worker must not be ready on a database its release cannot run on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _reset_postgres, run_sync
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
AUDIT_KEY = "health-test-audit-key-0123456789abcdef"
# Generous: two cores shared by several test runs; a process is up in ~5 s when idle.
START_WITHIN = 60.0


class PrivateRedis:
    """A redis-server of this test's own (never the shared one): started, killed, restarted
    on the same port."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.process: subprocess.Popen[bytes] | None = None
        self.options = ("--save", "", "--appendonly", "no", "--dir", str(tmp))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", *self.options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("the private redis-server did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.kill()


@dataclass
class Role:
    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path

    def get(self, path: str, *, port: int | None = None) -> tuple[int, str]:
        url = f"http://127.0.0.1:{port or self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def ready(self) -> tuple[int, dict[str, Any]]:
        status, body = self.get("/readyz")
        return status, json.loads(body)

    def metric(self, name: str) -> float | None:
        _, text = self.get("/metrics", port=self.metrics_port)
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return int(self.process.returncode)


def start_role(argv: list[str], env: dict[str, str], tmp: Path, name: str) -> Role:
    port, metrics_port = free_port(), free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "SLACK_"))}
    full_env = {
        **base,
        "PYTHONPATH": str(ROOT),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "METRICS_PORT": str(metrics_port),
        "SLACK_BOT_TOKEN": "xoxb-health-test",
        # Nothing listens there: these roles need no Slack to be healthy.
        "SLACK_API_URL": f"http://127.0.0.1:{free_port()}/api/",
        "SWITCHBOARD_AUDIT_KEY": AUDIT_KEY,
        "SWITCHBOARD_LOG_FORMAT": "json",
        **env,
    }
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "from switchboard.cli import main; main()", *argv],
            env=full_env,
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    role = Role(process, port, metrics_port, log)
    deadline = time.monotonic() + START_WITHIN
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{name} exited {process.returncode}:\n{role.output()[-3000:]}")
        try:
            if role.get("/healthz")[0] == 200:
                return role
        except OSError:
            pass
        time.sleep(0.2)
    role.stop()
    raise AssertionError(f"{name} did not serve /healthz in {START_WITHIN:.0f} s:\n{role.output()}")


def eventually(
    what: str, probe: Callable[[], Any], accept: Callable[[Any], bool], *, within: float
) -> Any:
    """Poll ``probe`` until ``accept`` says yes; fail with the last value seen."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except OSError as exc:
            last = exc
        else:
            if accept(last):
                return last
        time.sleep(0.25)
    raise AssertionError(f"{what} not seen within {within:.0f} s; last: {last!r}")


# -- scheduler -----------------------------------------------------------------------------


@pytest.fixture
def schedulers(private_redis: PrivateRedis, tmp_path: Path) -> Iterator[Callable[[str], Role]]:
    """Start ``switchboard scheduler`` replicas on one SQLite file and the private Redis."""
    started: list[Role] = []
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/switchboard.db",
        "REDIS_URL": private_redis.url,
        "SWITCHBOARD_REDIS_PREFIX": "health",
    }

    def start(name: str) -> Role:
        role = start_role(["scheduler"], env, tmp_path, name)
        started.append(role)
        return role

    yield start
    for role in started:
        role.stop()


def _leader(role: Role) -> bool:
    return bool(role.ready()[1].get("leader"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_scheduler_serves_probes_and_reports_its_leadership(
    schedulers: Callable[[str], Role],
) -> None:
    first = schedulers("scheduler-a")
    status, body = eventually("a leader", first.ready, lambda r: r[1].get("leader"), within=30)
    assert status == 200
    assert {k: body[k] for k in ("status", "sql", "redis", "schema")} == {
        "status": "ready",
        "sql": "ok",
        "redis": "ok",
        "schema": "ok",
    }
    assert isinstance(body["term"], int) and body["holder"]
    assert first.metric("switchboard_scheduler_leader") == 1.0
    # /metrics lives on METRICS_PORT only (the chart's PodMonitoring scrapes that port).
    assert first.get("/metrics")[0] == 404

    standby = schedulers("scheduler-b")
    status, body = standby.ready()
    assert (status, body["status"], body["leader"]) == (200, "ready", False)
    assert standby.metric("switchboard_scheduler_leader") == 0.0

    # The leader steps down on SIGTERM (announcing it); the standby takes over.
    assert first.stop() == 0
    eventually("the standby taking over", lambda: _leader(standby), bool, within=30)
    assert standby.metric("switchboard_scheduler_leader") == 1.0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_scheduler_readiness_follows_its_redis(
    schedulers: Callable[[str], Role], private_redis: PrivateRedis
) -> None:
    role = schedulers("scheduler")
    eventually("a leader", role.ready, lambda r: r[0] == 200 and r[1]["leader"], within=30)

    private_redis.kill()
    _, body = eventually("not ready", role.ready, lambda r: r[0] == 503, within=30)
    assert body["redis"].startswith("unreachable") and body["sql"] == "ok"
    assert role.get("/healthz")[0] == 200  # alive: the kubelet must not restart it for this
    # A whole lease without Redis: the leader steps down, and says so.
    eventually(
        "the leader stepping down",
        lambda: role.metric("switchboard_scheduler_leader"),
        lambda v: v == 0.0,
        within=40,
    )

    private_redis.start()  # same port: the process reconnects by itself
    eventually("ready again", role.ready, lambda r: r[0] == 200, within=40)
    eventually("leading again", lambda: _leader(role), bool, within=40)
    assert role.metric("switchboard_scheduler_leader") == 1.0
    assert role.process.poll() is None


# -- worker --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_worker_readiness_follows_schema_and_redis(
    postgres_url: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """Not ready before ``switchboard migrate`` (the schema), ready after it; not ready
    while its Redis is down, ready again when it is back; never restarted for either."""
    run_sync(_reset_postgres(postgres_url))
    env = {
        "DATABASE_URL": postgres_url,
        "REDIS_URL": private_redis.url,
        "SWITCHBOARD_REDIS_PREFIX": "health",
    }
    worker = start_role(["worker", "--concurrency", "4"], env, tmp_path, "worker")
    try:
        status, body = worker.ready()
        assert status == 503, body
        assert "not migrated" in body["schema"] and body["queue"] == "ok"
        assert body["working"] == "starting"  # its queue workers wait for the schema too

        migrate = subprocess.run(
            [sys.executable, "-c", "from switchboard.cli import main; main()", "migrate"],
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "SWITCHBOARD_AUDIT_KEY": AUDIT_KEY,
                "DATABASE_URL": postgres_url,
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stderr
        status, body = eventually("ready", worker.ready, lambda r: r[0] == 200, within=30)
        assert {
            k: body[k] for k in ("sql", "redis", "queue", "schema", "accepting", "working")
        } == dict.fromkeys(("sql", "redis", "queue", "schema", "accepting", "working"), "ok")
        assert worker.get("/metrics", port=worker.metrics_port)[0] == 200
        assert "switchboard_runs_in_progress" in worker.get("/metrics", port=worker.metrics_port)[1]

        private_redis.kill()
        _, body = eventually("not ready", worker.ready, lambda r: r[0] == 503, within=30)
        assert body["redis"].startswith("unreachable") and body["sql"] == "ok"
        assert worker.get("/healthz")[0] == 200

        private_redis.start()
        eventually("ready again", worker.ready, lambda r: r[0] == 200, within=40)
        assert worker.process.poll() is None
    finally:
        assert worker.stop() == 0, worker.output()[-3000:]
