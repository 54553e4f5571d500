"""The Dockerfile's steps, run for real in a fresh virtualenv (there is no Docker daemon here).

The Dockerfile is read instruction by instruction and carried out the way a builder would:
``ENV`` sets the environment of later steps, ``WORKDIR`` the folder, ``COPY`` copies from the
build context (the repository) or the build stage, ``RUN`` runs in ``/bin/sh -c``. Absolute
paths of the image (``/opt/venv``, ``/src``, ``/app``) are mapped into a temporary folder.
Only the final stage's user creation (``groupadd``/``useradd``) is not run: it would change
this machine, and test_image.py checks the user against the chart. Then the image's ``CMD``
starts with the image's environment, its ``HEALTHCHECK`` command must pass, and its log lines
must be JSON with a severity (Cloud Logging).

This installs the runtime lock from PyPI (a few minutes): it runs under ``make chart-test``
(``SWITCHBOARD_REQUIRE_CHART_TOOLS=1``) or with ``SWITCHBOARD_IMAGE_STEPS=1``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.conftest import REQUIRE_TOOLS, ROOT
from tests.processes import free_port as _free_port

DOCKERFILE = ROOT / "Dockerfile"
IMAGE_PATHS = ("/opt/venv", "/src", "/app")
RUN_STEPS = REQUIRE_TOOLS or os.environ.get("SWITCHBOARD_IMAGE_STEPS") == "1"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),  # pip installs the whole runtime lock
    pytest.mark.skipif(
        not RUN_STEPS,
        reason="installs the image's packages from PyPI: make chart-test, or "
        "SWITCHBOARD_IMAGE_STEPS=1",
    ),
]


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        current = ""
    return out


@dataclass
class Stage:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class Builder:
    """Carries out the Dockerfile's instructions with the image's paths under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.stages: list[Stage] = []
        base = {k: v for k, v in os.environ.items() if k in {"HOME", "LANG", "TMPDIR"}}
        # The base image's `python`: this interpreter's own installation, not a venv.
        python = Path(sys.base_prefix) / "bin"
        self.base_env = {**base, "PATH": f"{python}:{os.environ['PATH']}"}

    def map(self, text: str) -> str:
        for path in IMAGE_PATHS:
            text = re.sub(
                rf"(?<![\w./-]){re.escape(path)}(?=[/\s:\"']|$)", str(self.root) + path, text
            )
        return text

    @property
    def stage(self) -> Stage:
        return self.stages[-1]

    def host(self, path: str) -> Path:
        if not path.startswith("/"):
            path = f"{self.stage.workdir.rstrip('/')}/{path}"
        return (
            Path(self.map(path)) if path.startswith(IMAGE_PATHS) else self.root / path.lstrip("/")
        )

    def env(self) -> dict[str, str]:
        return {**self.base_env, **self.stage.env}

    def run(self, text: str) -> None:
        for instruction, args in instructions(text):
            getattr(self, f"do_{instruction.lower()}")(args)

    def do_from(self, args: str) -> None:
        words = args.split()
        self.stages.append(Stage(name=words[2] if len(words) > 2 else f"stage{len(self.stages)}"))

    def do_env(self, args: str) -> None:
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            value = re.sub(
                r"\$(\w+)|\$\{(\w+)\}", lambda m: self.env().get(m[1] or m[2], ""), value
            )
            self.stage.env[key] = self.map(value)

    def do_workdir(self, args: str) -> None:
        self.stage.workdir = args
        self.host(args).mkdir(parents=True, exist_ok=True)

    def do_copy(self, args: str) -> None:
        words = shlex.split(args)
        source_stage = None
        if words[0].startswith("--from="):
            source_stage = words.pop(0).split("=", 1)[1]
        *sources, target = words
        for source in sources:
            if source_stage is not None:
                # Same mapped path in every stage: the venv is already where it belongs.
                assert self.host(source).exists(), f"COPY --from={source_stage} {source}: missing"
                assert self.host(source) == self.host(target), "a stage copy to another path"
                continue
            src = ROOT / source
            dest = self.host(target)
            if target.endswith("/") or len(sources) > 1:
                dest = dest / src.name
            if src.is_dir():
                shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)

    def do_run(self, args: str) -> None:
        if re.match(r"(groupadd|useradd)\b", args):
            self.stage.skipped.append(args)
            return
        result = subprocess.run(
            ["/bin/sh", "-c", self.map(args)],
            cwd=self.host(self.stage.workdir),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        assert result.returncode == 0, f"RUN {args[:120]}… failed:\n{result.stderr[-3000:]}"

    def do_cmd(self, args: str) -> None:
        self.stage.cmd = json.loads(args)

    def do_healthcheck(self, args: str) -> None:
        self.stage.healthcheck = json.loads(args.split(" CMD ", 1)[1])

    def do_user(self, args: str) -> None:
        pass  # the uid is test_image.py's business (it must match the chart)

    def do_expose(self, args: str) -> None:
        pass


def test_the_image_steps_build_a_venv_whose_cmd_serves_and_passes_its_healthcheck(
    tmp_path: Path,
) -> None:
    builder = Builder(tmp_path / "image")
    builder.root.mkdir()
    builder.run(DOCKERFILE.read_text())
    final = builder.stage
    assert len(builder.stages) == 2 and builder.stages[0].name == "build"
    assert [s.split()[0] for s in final.skipped] == ["groupadd"], final.skipped
    venv = builder.root / "opt" / "venv"
    assert (venv / "bin" / "switchboard").is_file()
    # Only the venv crosses into the final stage: the sources are not needed at run time.
    assert final.env["SWITCHBOARD_LOG_FORMAT"] == "json"

    port = _free_port()
    env = {
        **builder.env(),
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "SLACK_BOT_TOKEN": "xoxb-image-test",
        "SLACK_SIGNING_SECRET": "image-test-signing-secret",
        "SLACK_API_URL": f"http://127.0.0.1:{_free_port()}/api/",
    }
    env.pop("PYTHONPATH", None)  # the image's own packages, never this checkout's
    log = tmp_path / "serve.log"
    app_dir = builder.host(final.workdir)
    with log.open("wb") as out:
        process = subprocess.Popen(final.cmd, cwd=app_dir, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 120
        healthy = False
        while time.monotonic() < deadline and process.poll() is None and not healthy:
            check = subprocess.run(
                final.healthcheck,
                cwd=app_dir,
                env=env,
                capture_output=True,
                timeout=30,
                check=False,
            )
            healthy = check.returncode == 0
            time.sleep(0.5)
        assert healthy, f"HEALTHCHECK never passed:\n{log.read_text()[-3000:]}"
        which = subprocess.run(
            ["python", "-c", "import switchboard, sys; print(switchboard.__file__)"],
            env=env,
            cwd=app_dir,
            capture_output=True,
            text=True,
            check=True,
        )
        assert which.stdout.startswith(str(venv)), which.stdout  # installed, not this checkout
    finally:
        process.terminate()
        process.wait(30)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines, "serve logged nothing"
    for line in lines:
        assert {"severity", "message"} <= set(json.loads(line)), line
