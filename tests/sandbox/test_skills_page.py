"""The sandbox's Skills page over its HTTP server: skills, validation state, last eval;
a spec edited on disk shows up live, a broken one as a banner with its file:line while
the previous version keeps answering in the workspace."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from sandbox.web import TOKEN_HEADER
from storage.models import Run
from switchboard.sandbox import open_sandbox
from tests.sandbox.conftest import options

SPEC = """\
name: notes
version: '{version}'
description: {description}
instructions: Answer questions about the team's notes.
"""


async def skills(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/sandbox/skills")
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


async def until(
    http: httpx.AsyncClient, check: Callable[[dict[str, Any]], bool], poke: Callable[[], None]
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline, next_poke = loop.time() + 30, loop.time() + 3
    while True:
        data = await skills(http)
        if check(data):
            return data
        if loop.time() > deadline:
            raise AssertionError(f"the page never showed the change: {data}")
        if loop.time() > next_poke:
            poke()  # in case the watcher was not listening yet
            next_poke = loop.time() + 3
        await asyncio.sleep(0.1)


def entry(data: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [s for s in data["skills"] if s["name"] == name]
    return found


async def test_skills_page_lists_state_and_eval_and_follows_edits_on_disk(
    tmp_path: Path, monkeypatch: Any
) -> None:
    folder = tmp_path / "team-skills"
    folder.mkdir()
    spec = folder / "notes.yaml"
    spec.write_text(SPEC.format(version="1", description="Answer questions about notes."))
    # an evaluation run, where `switchboard eval` writes it by default
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "eval-results" / "20261201-120000" / "results.json"
    results.parent.mkdir(parents=True)
    results.write_text(
        json.dumps(
            {
                "version": 1,
                "started_at": "2026-12-01T12:00:00+00:00",
                "model": "offline",
                "cases": [],
                "summary": {
                    "skills": {"notes": {"cases": 3, "passed": 2, "pass_rate": 2 / 3}},
                },
            }
        )
    )
    async with open_sandbox(options(tmp_path, skills_dirs=(folder,))) as sandbox:
        async with httpx.AsyncClient(base_url=sandbox.url, timeout=30) as anonymous:
            assert (await anonymous.get("/sandbox/skills")).status_code == 401
            page = await anonymous.get(f"/skills?token={sandbox.token}")
            assert page.status_code == 303 and page.headers["location"] == "/skills"
        async with httpx.AsyncClient(
            base_url=sandbox.url, headers={TOKEN_HEADER: sandbox.token}, timeout=30
        ) as http:
            html = await http.get("/skills")
            assert html.status_code == 200 and 'id="skills-table"' in html.text

            data = await skills(http)
            assert data["errors"] == []
            assert str(folder) in data["folders"]
            notes = entry(data, "notes")
            assert notes["state"] == "valid" and notes["version"] == "1"
            assert notes["source"] == str(spec)
            assert notes["eval"]["passed"] == 2 and notes["eval"]["cases"] == 3
            assert entry(data, "refunds")["eval"] is None  # never evaluated
            assert entry(data, "digest")["kind"] == "python"

            # an edit on disk shows up live
            edit = SPEC.format(version="2", description="Answer questions about meeting notes.")
            spec.write_text(edit)
            data = await until(
                http, lambda d: entry(d, "notes")["version"] == "2", lambda: spec.write_text(edit)
            )
            assert entry(data, "notes")["description"] == "Answer questions about meeting notes."

            # a broken edit: a banner with file:line, and the previous version still answers
            broken = edit + "toolz: []\n"
            spec.write_text(broken)
            data = await until(http, lambda d: bool(d["errors"]), lambda: spec.write_text(broken))
            assert data["errors"] == [f"{spec}:5 toolz: unknown key (did you mean 'tools'?)"]
            assert entry(data, "notes")["version"] == "2"
            assert entry(data, "notes")["state"] == "previous version (the file has errors)"
            assert data["outcome"] == "rejected"
            index = await http.get("/")
            assert 'id="skills-banner"' in index.text

            await sandbox.actions.say(
                user="U0SAM", channel="C0PAYMENTS", text="@switchboard notes what is new?"
            )
            await sandbox.actions.settle(timeout=60)
            async with sandbox.host.services.sessions() as session:
                versions = list(
                    await session.scalars(select(Run.skill_version).where(Run.skill == "notes"))
                )
            assert versions == ["2"]

            # fixed: the banner goes away
            spec.write_text(edit.replace("'2'", "'3'"))
            data = await until(
                http,
                lambda d: not d["errors"] and entry(d, "notes")["version"] == "3",
                lambda: spec.write_text(edit.replace("'2'", "'3'")),
            )
            assert entry(data, "notes")["state"] == "valid"
