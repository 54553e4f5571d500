"""Settings: contract defaults, parsing, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from switchboard.settings import DEFAULT_DATABASE_URL, ConfigError, Settings


def test_defaults_are_the_embedded_ones() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.redis_url is None and settings.uses_embedded_redis
    assert settings.model == "offline"
    assert settings.slack_api_url == "https://slack.com/api/"
    assert (settings.host, settings.port) == ("0.0.0.0", 3000)
    assert settings.skills_dirs == []


def test_parses_lists_and_normalises_urls() -> None:
    settings = Settings.from_env(
        {
            "SWITCHBOARD_SKILLS_DIR": "/srv/skills:/opt/more",
            "SWITCHBOARD_FALLBACK_MODELS": "openai:gpt-4.1-mini, anthropic:claude-sonnet-4-5",
            "DATABASE_URL": "postgresql://sb@db:5432/sb",
            "SWITCHBOARD_AUDIT_KEY": "test-audit-key-0123456789abcdef-0123",
            "SLACK_API_URL": "http://127.0.0.1:9999/api",
            "REDIS_URL": "rediss://cache:6380/2",
        }
    )
    assert settings.skills_dirs == ["/srv/skills", "/opt/more"]
    assert settings.fallback_models == ["openai:gpt-4.1-mini", "anthropic:claude-sonnet-4-5"]
    assert settings.database_url == "postgresql+asyncpg://sb@db:5432/sb"
    assert settings.slack_api_url == "http://127.0.0.1:9999/api/"
    assert settings.redis_url == "rediss://cache:6380/2"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "nonsense"),
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("REDIS_URL", "ftp://x"),
        ("SLACK_API_URL", "slack.com"),
        ("SWITCHBOARD_LOG_LEVEL", "chatty"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({variable: value})
    assert info.value.variable == variable
    assert str(info.value).startswith(f"{variable}: invalid value")
    assert "\n" not in str(info.value)


def test_secrets_never_printed() -> None:
    settings = Settings.from_env(
        {
            "SLACK_BOT_TOKEN": "xoxb-very-secret",
            "SLACK_SIGNING_SECRET": "sign-secret",
            "DATABASE_URL": "postgresql://sb:hunter2@db/sb",
            "SWITCHBOARD_AUDIT_KEY": "test-audit-key-0123456789abcdef-0123",
            "REDIS_URL": "redis://:redispass@cache:6379/0",
        }
    )
    shown = repr(settings) + str(settings)
    for secret in ("xoxb-very-secret", "sign-secret", "hunter2", "redispass", "test-audit-key"):
        assert secret not in shown


def test_require_names_missing_variable() -> None:
    with pytest.raises(ConfigError, match=r"^SLACK_SIGNING_SECRET: required"):
        Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1"}).require(
            "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"
        )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DATABASE_URL": "nonsense"}, "switchboard: DATABASE_URL: invalid value"),
        ({"PORT": "abc"}, "switchboard: PORT: invalid value"),
        ({"REDIS_URL": "ftp://x"}, "switchboard: REDIS_URL: invalid value"),
    ],
)
def test_cli_exits_2_with_one_line(env: dict[str, str], expected: str, tmp_path: object) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from switchboard.cli import main; main()", "migrate"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(expected)
    assert "Traceback" not in result.stderr
