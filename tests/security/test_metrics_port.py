"""Finding 12: with ``METRICS_PORT`` set, ``/metrics`` lives only on that internal port.

The metrics expose skill names, outcomes and traffic; a deployment that publishes the
Slack port to the internet should not publish them too. The attack is simply ``GET
/metrics`` on the public port: 404 once ``METRICS_PORT`` is set, for ``serve`` (a real
process), the Socket Mode ops app and the sandbox. Positive controls: the metrics port
answers, and without ``METRICS_PORT`` the public port still serves ``/metrics``.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bot.http import create_ops_app
from sandbox.server import SandboxOptions
from switchboard.sandbox import open_sandbox
from switchboard.serve import metrics_listener
from switchboard.settings import ConfigError, Settings
from tests.bot.conftest import BotEnv
from tests.processes import free_port as _free_port
from tests.processes import serve as _serve
from tests.processes import stop as _stop
from tests.processes import wait_healthy as _wait_healthy


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_serve_moves_metrics_off_the_public_port(tmp_path: Path) -> None:
    metrics_port = _free_port()
    proc, port = _serve(tmp_path, METRICS_PORT=str(metrics_port))
    try:
        _wait_healthy(proc, f"http://127.0.0.1:{port}/healthz")
        public = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert public.status_code == 404
        assert "switchboard_" not in public.text
        internal = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert internal.status_code == 200
        assert "switchboard_slack_requests" in internal.text
        # Only /metrics is there: the internal port is not a second public app.
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/healthz").status_code == 404
        events = httpx.post(f"http://127.0.0.1:{metrics_port}/slack/events", content=b"{}")
        assert events.status_code in {404, 405}
    finally:
        _stop(proc)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_positive_control_serve_without_metrics_port_serves_them_publicly(
    tmp_path: Path,
) -> None:
    proc, port = _serve(tmp_path)
    try:
        _wait_healthy(proc, f"http://127.0.0.1:{port}/healthz")
        public = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert public.status_code == 200
        assert "switchboard_slack_requests" in public.text
    finally:
        _stop(proc)


async def test_socket_mode_ops_app_moves_metrics_too(slack_bot: BotEnv) -> None:
    bot, services = slack_bot.bot, slack_bot.services
    port = _free_port()
    ops = create_ops_app(bot, services=services, serve_metrics=False)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=ops), base_url="http://ops") as http,
        metrics_listener(bot, host="127.0.0.1", port=port),
        httpx.AsyncClient() as internal,
    ):
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/metrics")).status_code == 404
        answer = await internal.get(f"http://127.0.0.1:{port}/metrics")
        assert answer.status_code == 200 and "switchboard_" in answer.text
    # Positive control: the default ops app still has /metrics.
    default = create_ops_app(bot, services=services)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=default), base_url="http://ops"
    ) as http:
        assert (await http.get("/metrics")).status_code == 200


async def test_sandbox_moves_metrics_too(tmp_path: Path) -> None:
    port = _free_port()
    env = {"SWITCHBOARD_MODEL": "offline", "METRICS_PORT": str(port)}
    options = SandboxOptions(port=0, state_dir=tmp_path / "state", persist=False, env=env)
    async with open_sandbox(options) as sandbox, httpx.AsyncClient() as http:
        assert (await http.get(f"{sandbox.url}/metrics")).status_code == 404
        answer = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert answer.status_code == 200 and "switchboard_" in answer.text
        assert (await http.get(f"{sandbox.url}/healthz")).status_code == 200


def test_metrics_port_is_validated() -> None:
    assert Settings.from_env({"METRICS_PORT": "9100"}).metrics_port == 9100
    assert Settings.from_env({"METRICS_PORT": ""}).metrics_port is None
    for bad in ("0", "70000", "nine"):
        with pytest.raises(ConfigError) as error:
            Settings.from_env({"METRICS_PORT": bad})
        assert error.value.variable == "METRICS_PORT"
    with pytest.raises(ConfigError, match="PORT"):
        Settings.from_env({"PORT": "3000", "METRICS_PORT": "3000"})
