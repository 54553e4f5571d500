"""Real ``switchboard`` processes for tests: a free port, the minimal environment, start,
wait until healthy, stop. One place, so every test starts the CLI the same way."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import httpx

from tests.bot.conftest import SIGNING_SECRET

ROOT = Path(__file__).resolve().parents[1]
SWITCHBOARD = str(Path(sys.executable).parent / "switchboard")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    """What ``switchboard serve`` needs on embedded defaults, on ``port``, with nothing
    inherited but PATH and PYTHONPATH (the code under test, when a run points it at another
    checkout); Slack's Web API points at a closed port unless ``extra`` says otherwise."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "HOME": str(tmp_path),
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'sb.db'}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SWITCHBOARD_SCHEDULER": "false",
        "SWITCHBOARD_LOG_LEVEL": "WARNING",
        **extra,
    }


def start(
    args: list[str],
    env: Mapping[str, str],
    *,
    cwd: Path = ROOT,
    output: IO[bytes] | int = subprocess.PIPE,
) -> subprocess.Popen[bytes]:
    """``switchboard ARGS`` with ``env``; its output (stdout and stderr) to ``output``."""
    return subprocess.Popen(
        [SWITCHBOARD, *args], env=dict(env), cwd=cwd, stdout=output, stderr=subprocess.STDOUT
    )


def serve(tmp_path: Path, **extra: str) -> tuple[subprocess.Popen[bytes], int]:
    """A ``switchboard serve`` on a free port (see :func:`serve_env`); not yet healthy."""
    port = free_port()
    return start(["serve"], serve_env(tmp_path, port, **extra)), port


def wait_healthy(proc: subprocess.Popen[bytes], url: str, *, timeout: float = 60) -> None:
    """Until ``url`` answers 200; fails with the process's output if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered"
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
