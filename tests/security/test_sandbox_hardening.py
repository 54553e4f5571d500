"""Finding 9: the sandbox is a local tool, not an open door.

The attacks:

* the developer's shell holds a production skills folder and its CRM token: the sandboxed
  bot must not load that folder nor expand the token into a tool call;
* any process or web page on the machine drives the page's JSON API: without the per-run
  token nothing happens (401); a cross-origin page cannot post (403), not even
  ``text/plain`` "simple" requests (415), and a DNS-rebinding name is refused (421);
* a card number typed in the sandbox lands raw in ``workspace.json`` and in recordings,
  world-readable.

Positive controls: the holder of the token (cookie or header) drives the page, a variable
passed with ``--env`` reaches the skill, ``--inherit-env`` restores the old behaviour, and
a masked recording still replays without a diff.
"""

from __future__ import annotations

import json
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from sandbox.record import iter_lines
from sandbox.server import (
    ALLOWED_ENV,
    RunningSandbox,
    SandboxOptions,
    sandbox_environment,
)
from switchboard.sandbox import check_recording, open_sandbox
from tests.fakes.http_target import HttpTarget

CARD = "4111 1111 1111 1111"
SECRET = "crm-prod-token-do-not-leak"

LEAKY_SKILL = """
name: prodcrm
description: Look up production customers.
instructions: You look customers up.
tools:
  - name: lookup_customer
    description: Fetch a customer by id.
    http:
      method: GET
      url: "${PROD_CRM_URL}/customers/{customer_id}"
      headers: {Authorization: "Bearer ${CRM_TOKEN:-}"}
    parameters:
      customer_id: {type: string, pattern: "^[0-9]+$"}
"""


@pytest.fixture
def prod_crm() -> Iterator[HttpTarget]:
    with HttpTarget() as target:
        target.route("GET", "/customers/7", json={"customer": "Ada"})
        yield target


@pytest.fixture
def shell(tmp_path: Path, prod_crm: HttpTarget) -> dict[str, str]:
    """A developer's shell: a production skills folder, its token, a Slack token, a key."""
    skills = tmp_path / "prod-skills"
    skills.mkdir()
    (skills / "prodcrm.yaml").write_text(LEAKY_SKILL)
    return {
        "SWITCHBOARD_MODEL": "offline",
        "SWITCHBOARD_SKILLS_DIR": str(skills),
        "CRM_TOKEN": SECRET,
        "PROD_CRM_URL": prod_crm.base_url,
        # The stand-in for the production CRM listens on loopback, which HTTP tools reach
        # only when it is allow-listed (as a developer's shell would for an internal host).
        "SWITCHBOARD_HTTP_ALLOWED_HOSTS": prod_crm.base_url.removeprefix("http://"),
        "SLACK_BOT_TOKEN": "xoxb-production-token",
        "DATABASE_URL": "postgresql+asyncpg://prod@db/prod",
        "OPENAI_API_KEY": "sk-test-allowed",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
    }


def _options(tmp_path: Path, env: dict[str, str], **extra: object) -> SandboxOptions:
    values: dict[str, object] = {
        "port": 0,
        "state_dir": tmp_path / "state",
        "persist": False,
        "env": env,
    }
    values.update(extra)
    return SandboxOptions(**values)  # type: ignore[arg-type]


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[RunningSandbox]:
    async with open_sandbox(_options(tmp_path, {"SWITCHBOARD_MODEL": "offline"})) as sb:
        yield sb


def _host(sb: RunningSandbox) -> str:
    return sb.url.removeprefix("http://")


# -- environment ------------------------------------------------------------------------------


async def test_the_shell_environment_does_not_reach_the_bot(
    tmp_path: Path, shell: dict[str, str], prod_crm: HttpTarget
) -> None:
    async with open_sandbox(_options(tmp_path, shell)) as sb:
        assert "prodcrm" not in sb.host.services.registry
        assert sb.host.settings.skills_dirs == []
        assert sb.host.settings.database_url.startswith("sqlite")
        await sb.actions.say(
            user="U0SAM",
            channel="C0SUPPORT",
            text="@switchboard prodcrm lookup_customer customer_id=7",
        )
        await sb.actions.settle()
    assert prod_crm.requests == []
    env = sandbox_environment(shell)
    assert set(env) <= ALLOWED_ENV
    assert "CRM_TOKEN" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert env["OPENAI_API_KEY"] == "sk-test-allowed"  # model settings are allowed


async def test_skills_folder_without_its_token_calls_without_it(
    tmp_path: Path, shell: dict[str, str], prod_crm: HttpTarget
) -> None:
    """``--skills DIR`` loads the folder, but the token still stays in the shell."""
    skills = Path(shell["SWITCHBOARD_SKILLS_DIR"])
    options = _options(tmp_path, shell, skills_dirs=(skills,), pass_env=("PROD_CRM_URL",))
    async with open_sandbox(options) as sb:
        assert "prodcrm" in sb.host.services.registry
        await sb.actions.say(
            user="U0SAM",
            channel="C0SUPPORT",
            text="@switchboard prodcrm lookup_customer customer_id=7",
        )
        await sb.actions.settle()
    assert prod_crm.requests, "the tool was not called"
    assert all(SECRET not in json.dumps(dict(r.headers)) for r in prod_crm.requests)


async def test_positive_control_named_and_inherited_variables_reach_the_skill(
    tmp_path: Path, shell: dict[str, str], prod_crm: HttpTarget
) -> None:
    skills = Path(shell["SWITCHBOARD_SKILLS_DIR"])
    options = _options(
        tmp_path, shell, skills_dirs=(skills,), pass_env=("PROD_CRM_URL", "CRM_TOKEN")
    )
    async with open_sandbox(options) as sb:
        await sb.actions.say(
            user="U0SAM",
            channel="C0SUPPORT",
            text="@switchboard prodcrm lookup_customer customer_id=7",
        )
        await sb.actions.settle()
    assert any(SECRET in json.dumps(dict(r.headers)) for r in prod_crm.requests)
    inherited = sandbox_environment(shell, inherit=True)
    assert inherited["CRM_TOKEN"] == SECRET and inherited["SWITCHBOARD_SKILLS_DIR"]


# -- the page's API ---------------------------------------------------------------------------


async def test_the_api_needs_the_run_token(sandbox: RunningSandbox) -> None:
    before = len(sandbox.emulator.messages["C0SUPPORT"])
    say = {"user": "U0SAM", "channel": "C0SUPPORT", "text": "@switchboard ask hi"}
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        assert (await http.get("/")).status_code == 401
        assert (await http.get("/sandbox/state?user=U0SAM")).status_code == 401
        assert (await http.get("/sandbox/events")).status_code == 401
        assert (await http.post("/sandbox/say", json=say)).status_code == 401
        wrong = {"x-sandbox-token": "guess"}
        assert (await http.post("/sandbox/say", json=say, headers=wrong)).status_code == 401
        assert (await http.get("/?token=guess")).status_code == 401
    assert len(sandbox.emulator.messages["C0SUPPORT"]) == before


async def test_positive_control_the_printed_url_gives_a_cookie_that_works(
    sandbox: RunningSandbox,
) -> None:
    assert sandbox.page_url.startswith(sandbox.url) and "token=" in sandbox.page_url
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        first = await http.get(sandbox.page_url.removeprefix(sandbox.url) + "&user=U0SAM")
        assert first.status_code == 303
        assert first.headers["location"] == "/?user=U0SAM"  # the token leaves the URL
        cookie = first.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        page = await http.get("/?user=U0SAM")  # the client keeps the cookie
        assert page.status_code == 200 and "Switchboard sandbox" in page.text
        state = await http.get("/sandbox/state?user=U0SAM")
        assert state.status_code == 200 and state.json()["me"] == "U0SAM"
        said = await http.post(
            "/sandbox/say",
            json={"user": "U0SAM", "channel": "C0SUPPORT", "text": "hello from the page"},
            headers={"origin": sandbox.url},
        )
        assert said.status_code == 200
    texts = [m["text"] for m in sandbox.emulator.messages["C0SUPPORT"]]
    assert "hello from the page" in texts
    async with httpx.AsyncClient(base_url=sandbox.url, headers=sandbox.auth_headers) as script:
        assert (await script.get("/sandbox/state")).status_code == 200


async def test_cross_origin_and_text_plain_posts_are_refused(sandbox: RunningSandbox) -> None:
    before = len(sandbox.emulator.messages["C0SUPPORT"])
    body = json.dumps({"user": "U0SAM", "channel": "C0SUPPORT", "text": "csrf"})
    port = sandbox.url.rsplit(":", 1)[1]
    async with httpx.AsyncClient(base_url=sandbox.url, headers=sandbox.auth_headers) as http:
        # A form on another site, or a page on another local port, posting text/plain.
        for origin in ("https://evil.example", f"http://127.0.0.1:{int(port) + 1}", "null"):
            answer = await http.post(
                "/sandbox/say",
                content=body,
                headers={"content-type": "text/plain", "origin": origin},
            )
            assert answer.status_code == 403, origin
            answer = await http.post(
                "/sandbox/say",
                content=body,
                headers={"content-type": "application/json", "origin": origin},
            )
            assert answer.status_code == 403, origin
        # Same origin, but not JSON: refused too.
        plain = await http.post(
            "/sandbox/say",
            content=body,
            headers={"content-type": "text/plain", "origin": sandbox.url},
        )
        assert plain.status_code == 415
        # The demo CRM and the bot's endpoint refuse foreign origins as well.
        crm = await http.post(
            "/crm/refunds",
            content=json.dumps({"order_id": "1001", "amount": 1}),
            headers={"content-type": "text/plain", "origin": "https://evil.example"},
        )
        assert crm.status_code == 403
    assert len(sandbox.emulator.messages["C0SUPPORT"]) == before


async def test_foreign_host_names_are_refused(sandbox: RunningSandbox) -> None:
    """DNS rebinding: attacker.example resolves to 127.0.0.1, the browser sends its name."""
    port = sandbox.url.rsplit(":", 1)[1]
    async with httpx.AsyncClient(base_url=sandbox.url, headers=sandbox.auth_headers) as http:
        for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.2:{port}"):
            for method, path in (("GET", "/sandbox/state"), ("GET", "/"), ("GET", "/healthz")):
                answer = await http.request(method, path, headers={"host": host})
                assert answer.status_code == 421, (host, path)
            answer = await http.post(
                "/sandbox/say",
                json={"user": "U0SAM", "channel": "C0SUPPORT", "text": "rebound"},
                headers={"host": host},
            )
            assert answer.status_code == 421
        # Positive control: the local names work.
        for host in (_host(sandbox), f"localhost:{port}", f"[::1]:{port}"):
            answer = await http.get("/sandbox/state", headers={"host": host})
            assert answer.status_code == 200, host


# -- files on disk ----------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_recordings_and_saved_workspace_are_masked_and_private(tmp_path: Path) -> None:
    recording = tmp_path / "session.jsonl"
    recording.write_text("")  # an existing file keeps no wider mode either
    recording.chmod(0o644)
    options = _options(tmp_path, {"SWITCHBOARD_MODEL": "offline"}, persist=True, record=recording)
    async with open_sandbox(options) as sb:
        await sb.actions.say(
            user="U0SAM",
            channel="C0SUPPORT",
            text=f"@switchboard ask customer card {CARD}, mail ana.lima@example.com",
        )
        await sb.actions.settle()
    saved = tmp_path / "state" / "workspace.json"
    for path in (recording, saved):
        text = path.read_text()
        assert CARD not in text and "4111111111111111" not in text, path
        assert "ana.lima@example.com" not in text, path
        assert _mode(path) == 0o600, (path, oct(_mode(path)))
    assert _mode(tmp_path / "state") == 0o700
    assert "[card ****1111]" in recording.read_text()
    # Positive control: the masked recording is still a recording that replays cleanly.
    kinds = {e["type"] for e in iter_lines(recording)}
    assert {"header", "action", "inbound", "call"} <= kinds
    diff, steps = await check_recording(recording, env={"SWITCHBOARD_MODEL": "offline"})
    assert steps == 1 and diff == "", diff


async def test_positive_control_the_live_workspace_keeps_what_was_typed(
    sandbox: RunningSandbox,
) -> None:
    """Masking is for what is written to disk; the page shows what the person typed."""
    await sandbox.actions.say(user="U0SAM", channel="C0SUPPORT", text=f"card {CARD}")
    assert sandbox.emulator.messages["C0SUPPORT"][-1]["text"] == f"card {CARD}"
