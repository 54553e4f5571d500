"""Secrets in specs: never in URLs, never printed by ``switchboard skills show``.

Values from ``${ENV}`` are secrets. Inside a URL they land in access logs, proxies and our
own log lines (which print the path), so a spec that puts one there - or credentials in
the user-info, or a credential-like query parameter - is rejected with file:line field.
``skills show`` prints ``${VAR}`` for every expanded value and redacts what looks like a
key written literally into a URL.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from skills.spec import SpecValidationError, load_spec_text, redact_url
from switchboard.cli import app as cli
from tests.security.conftest import write_skill

TEMPLATE = """\
name: psp
description: Payments provider.
instructions: Help.
tools:
  - name: balance
    description: Balance.
    http:
      method: GET
      url: "{url}"
"""

ENV = {"PSP_URL": "https://psp.example.com/v2", "PSP_KEY": "sk_live_9f8e7d6c5b4a"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "https://psp.example.com/v1/${PSP_KEY}/balance",
            "${PSP_KEY} is expanded inside the URL; values from the environment are secrets "
            "and may only form the start of the URL (scheme, host, port and a path prefix) - "
            "send this one in `headers:` or `query:`",
        ),
        (
            "${PSP_URL}/balance?key=${PSP_KEY}",
            "${PSP_KEY} is expanded inside the URL; values from the environment are secrets "
            "and may only form the start of the URL (scheme, host, port and a path prefix) - "
            "send this one in `headers:` or `query:`",
        ),
        (
            "https://bot:hunter2@psp.example.com/balance",
            "credentials in the URL (user:password@host) are not allowed; send them in an "
            "Authorization header",
        ),
        (
            "https://psp.example.com/balance?api_key=sk_live_literal",
            "the URL's query parameter 'api_key' looks like a credential; move it to "
            '`query: {api_key: "${...}"}`, where it is redacted',
        ),
    ],
)
def test_secrets_in_urls_are_validation_errors(url: str, message: str) -> None:
    with pytest.raises(SpecValidationError) as info:
        load_spec_text(TEMPLATE.format(url=url), filename="psp.yaml", env=ENV)
    assert f"psp.yaml:9 tools[0].http.url: {message}" in [str(i) for i in info.value.issues]
    for issue in info.value.issues:
        assert ENV["PSP_KEY"] not in str(issue)


def test_secrets_positive_control_base_url_from_env_loads() -> None:
    spec = load_spec_text(TEMPLATE.format(url="${PSP_URL}/balance"), filename="psp.yaml", env=ENV)
    assert spec.http_tools[0].display_url() == "${PSP_URL}/balance"
    assert spec.secrets == frozenset(ENV.values()) - {ENV["PSP_KEY"]}


SHOWN_SKILL = """\
name: webhooks
description: Posts to the incident webhook.
instructions: Post it.
model: ${WEBHOOK_MODEL}
access:
  channels: ["${INCIDENT_CHANNEL}"]
tools:
  - name: notify
    description: Notify.
    http:
      method: POST
      url: "https://hooks.example.com/services/T0INCIDENT/B0HOOKS/q8Zr4kLm2NvX7pT1sY9wE3aB"
      headers: {X-Signature: sig_0123456789abcdef, Accept: application/json}
      json: {token: "${HOOK_TOKEN}", text: "{text}"}
    parameters:
      text: {type: string}
    approval: none
"""


def test_secrets_skills_show_redacts_every_expanded_value_and_literal_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "WEBHOOK_MODEL": "openai:gpt-4.1-mini-secret-deployment",
        "INCIDENT_CHANNEL": "C0SECRETCHANNEL",
        "HOOK_TOKEN": "hook-token-1234567890",
    }
    write_skill(tmp_path / "skills", SHOWN_SKILL)
    monkeypatch.setenv("SWITCHBOARD_SKILLS_DIR", str(tmp_path / "skills"))
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)

    result = CliRunner().invoke(cli, ["skills", "show", "webhooks"])

    assert result.exit_code == 0, result.output
    for value in [*secrets.values(), "q8Zr4kLm2NvX7pT1sY9wE3aB", "sig_0123456789abcdef"]:
        assert value not in result.output
    assert "model:       ${WEBHOOK_MODEL}" in result.output
    assert "access.channels: ${INCIDENT_CHANNEL}" in result.output
    assert "POST https://hooks.example.com/services/T0INCIDENT/B0HOOKS/<redacted>" in result.output


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p@x.example.com/a", "https://<redacted>@x.example.com/a"),
        (
            "https://x.example.com/a?token=abc&page=2",
            "https://x.example.com/a?token=<redacted>&page=2",
        ),
        ("https://x.example.com/a?token={t}", "https://x.example.com/a?token={t}"),
        ("${BASE}/orders/{order_id}", "${BASE}/orders/{order_id}"),
        (
            "https://x.example.com/orders/12345678901234567890",
            "https://x.example.com/orders/12345678901234567890",
        ),
        ("https://x.example.com/k/abc123def456ghi789jkl0", "https://x.example.com/k/<redacted>"),
    ],
)
def test_secrets_display_url_redaction(url: str, shown: str) -> None:
    assert redact_url(url) == shown
