"""Hot reload in a real ``switchboard serve`` process: it says at start which skills it
loaded from where, loads an edited spec within seconds, rejects a broken one with its
file:line (log line and metric) and keeps the previous version."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.bot.conftest import SIGNING_SECRET
from tests.security.test_metrics_port import _free_port, _stop, _wait_healthy

SPEC = """\
name: notes
version: '{version}'
description: Answer questions about the team's notes.
instructions: Answer from the notes.
"""


def _metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _until(check: Callable[[], bool], poke: Callable[[], None], what: str) -> None:
    deadline, next_poke = time.monotonic() + 40, time.monotonic() + 3
    while not check():
        assert time.monotonic() < deadline, f"serve never {what}"
        if time.monotonic() > next_poke:
            poke()
            next_poke = time.monotonic() + 3
        time.sleep(0.1)


def test_serve_reloads_an_edited_spec_and_rejects_a_broken_one(tmp_path: Path) -> None:
    folder = tmp_path / "skills"
    folder.mkdir()
    spec = folder / "notes.yaml"
    spec.write_text(SPEC.format(version="1"))
    port = _free_port()
    log_path = tmp_path / "serve.log"
    env = {
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
        "SWITCHBOARD_SKILLS_DIR": str(folder),
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "switchboard"), "serve"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def output() -> str:
        return log_path.read_text(errors="replace")

    try:
        _wait_healthy(proc, f"http://127.0.0.1:{port}/healthz")
        started = output()
        assert f"skills from: built-ins, {folder}" in started
        assert f"notes v1  {spec}" in started

        edit = SPEC.format(version="2")
        spec.write_text(edit)
        _until(
            lambda: "skill reloaded: notes v1 → v2" in output(),
            lambda: spec.write_text(edit),
            "loaded the edit",
        )
        assert _metric(port, 'switchboard_skill_reloads_total{outcome="applied"}') >= 1

        broken = edit + "toolz: []\n"
        spec.write_text(broken)
        _until(
            lambda: "skill spec rejected" in output(),
            lambda: spec.write_text(broken),
            "rejected the broken spec",
        )
        assert f"skill spec rejected: {spec}:5 toolz: unknown key" in output()
        assert "skill notes v2 keeps serving its previous version" in output()
        assert _metric(port, 'switchboard_skill_reloads_total{outcome="rejected"}') >= 1
        assert _metric(port, "switchboard_skill_spec_errors") == 1
        assert proc.poll() is None  # still serving
    finally:
        _stop(proc)
