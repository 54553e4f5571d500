"""Sandbox fixtures: a whole sandbox (bot, emulator, CRM, page) on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.server import RunningSandbox, SandboxOptions
from sandbox.workspace import RateLimit
from switchboard.sandbox import open_sandbox

#: The environment the sandboxed bot sees: nothing from the developer's shell leaks in.
ENV = {"SWITCHBOARD_MODEL": "offline"}


def options(tmp_path: Path, **overrides: object) -> SandboxOptions:
    values: dict[str, object] = {
        "port": 0,
        "state_dir": tmp_path / "state",
        "persist": False,
        "env": ENV,
    }
    values.update(overrides)
    return SandboxOptions(**values)  # type: ignore[arg-type]


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[RunningSandbox]:
    async with open_sandbox(options(tmp_path, rate_limit=RateLimit(per_second=1, burst=20))) as sb:
        yield sb
