"""Hot reload in a real ``switchboard serve`` process: it says at start which skills it
loaded from where, loads an edited spec within seconds, rejects a broken one with its
file:line (log line and metric) and keeps the previous version."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.processes import free_port as _free_port
from tests.processes import serve_env, start
from tests.processes import stop as _stop
from tests.processes import wait_healthy as _wait_healthy

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
    env = serve_env(
        tmp_path,
        port,
        SWITCHBOARD_SKILLS_DIR=str(folder),
        SWITCHBOARD_LOG_LEVEL="INFO",
    )
    with log_path.open("wb") as log:
        proc = start(["serve"], env, cwd=tmp_path, output=log)

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
