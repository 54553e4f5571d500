"""Switchboard settings: the one place that reads the environment.

Every component receives the values it needs through its constructor; only the composition
root builds a :class:`Settings` (``Settings.from_env()``). A bad value raises
:class:`ConfigError` with one line naming the variable, which the CLI prints before exiting
with status 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from datetime import date, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from bot.views.text import LinkPolicy
from scheduler.calendar import parse_weekend
from skills.egress import parse_allow_entry
from skills.pricing import PriceError, PriceTable
from storage.audit import AuditKeyError, AuditKeyring, check_audit_key, keyring_for
from storage.ratelimit import Rate

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./switchboard.db"

_SQL_SCHEMES = {"sqlite+aiosqlite", "postgresql+asyncpg"}
_REDIS_SCHEMES = {"redis", "rediss", "unix"}


# Lets ``Settings.from_env(mapping)`` read a given mapping instead of os.environ (tests, CLI).
_ENV_OVERRIDE: ContextVar[Mapping[str, str] | None] = ContextVar("_ENV_OVERRIDE", default=None)


class _MappingEnvSource(EnvSettingsSource):
    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = _ENV_OVERRIDE.get()
        if env is None:
            return super()._load_env_vars()
        return parse_env_vars(env, self.case_sensitive, self.env_ignore_empty, None)


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message is one user-facing line."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


class Settings(BaseSettings):
    """Typed view of the environment (see the configuration contract in design.md)."""

    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="ignore",
        populate_by_name=True,
    )

    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", alias="SLACK_API_URL")
    database_url: str = Field(default=DEFAULT_DATABASE_URL, alias="DATABASE_URL", repr=False)
    redis_url: str | None = Field(default=None, alias="REDIS_URL", repr=False)
    redis_prefix: str = Field(default="sb", alias="SWITCHBOARD_REDIS_PREFIX")
    model: str = Field(default="offline", alias="SWITCHBOARD_MODEL")
    router_model: str | None = Field(default=None, alias="SWITCHBOARD_ROUTER_MODEL")
    fallback_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="SWITCHBOARD_FALLBACK_MODELS"
    )
    model_timeout: float = Field(default=60.0, gt=0, alias="SWITCHBOARD_MODEL_TIMEOUT")
    # Online evaluation (docs/evals.md): the share of production turns the judge scores
    # (0 = only answers that got a 👎), and the judge (unset: samples are not scored).
    eval_sample: float = Field(default=0.0, alias="SWITCHBOARD_EVAL_SAMPLE")
    judge_model: str | None = Field(default=None, alias="SWITCHBOARD_JUDGE_MODEL")
    skills_dirs: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="SWITCHBOARD_SKILLS_DIR"
    )
    skills_reload: bool = Field(default=True, alias="SWITCHBOARD_SKILLS_RELOAD")
    http_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="SWITCHBOARD_HTTP_ALLOWED_HOSTS"
    )
    memory_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0, alias="SWITCHBOARD_MEMORY_TTL")
    max_checkpoints: int = Field(default=20, ge=2, alias="SWITCHBOARD_MAX_CHECKPOINTS")
    max_concurrent_runs: int = Field(default=16, ge=1, alias="SWITCHBOARD_MAX_CONCURRENT_RUNS")
    pii_key: SecretStr | None = Field(default=None, alias="SWITCHBOARD_PII_KEY")
    audit_key: SecretStr | None = Field(default=None, alias="SWITCHBOARD_AUDIT_KEY")
    admin_usergroup: str | None = Field(default=None, alias="SWITCHBOARD_ADMIN_USERGROUP")
    user_rate: str = Field(default="10/1m", alias="SWITCHBOARD_USER_RATE")
    channel_rate: str = Field(default="60/1m", alias="SWITCHBOARD_CHANNEL_RATE")
    tool_result_max_chars: int = Field(
        default=24_000, ge=1_000, alias="SWITCHBOARD_TOOL_RESULT_MAX_CHARS"
    )
    max_background_tasks: int = Field(default=256, ge=1, alias="SWITCHBOARD_MAX_BACKGROUND_TASKS")
    streaming: bool = Field(default=False, alias="SWITCHBOARD_STREAMING")
    approval_dms: bool = Field(default=False, alias="SWITCHBOARD_APPROVAL_DMS")
    scheduler_enabled: bool = Field(default=True, alias="SWITCHBOARD_SCHEDULER")
    weekend: str = Field(default="sat-sun", alias="SWITCHBOARD_WEEKEND")
    holidays: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="SWITCHBOARD_HOLIDAYS"
    )
    schedule_max_failures: int = Field(default=5, ge=1, alias="SWITCHBOARD_SCHEDULE_MAX_FAILURES")
    approval_sweep_seconds: float = Field(default=30.0, gt=0, alias="SWITCHBOARD_APPROVAL_SWEEP")
    log_level: str = Field(default="INFO", alias="SWITCHBOARD_LOG_LEVEL")
    log_format: str = Field(default="text", alias="SWITCHBOARD_LOG_FORMAT")
    #: A YAML/JSON price file (docs/observability.md); unset: the built-in list prices.
    model_prices: str | None = Field(default=None, alias="SWITCHBOARD_MODEL_PRICES")
    #: Cloud Logging's trace field names the project (``projects/<id>/traces/<trace>``).
    google_cloud_project: str | None = Field(default=None, alias="GOOGLE_CLOUD_PROJECT")
    host: str = Field(default="0.0.0.0", alias="HOST")  # noqa: S104 - a server binds all
    port: int = Field(default=3000, ge=1, le=65535, alias="PORT")
    metrics_port: int | None = Field(default=None, ge=1, le=65535, alias="METRICS_PORT")
    link_domains: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="SWITCHBOARD_LINK_DOMAINS"
    )
    # The run queue (docs/adr/0001-run-queue.md).
    inprocess_workers: bool = Field(default=True, alias="SWITCHBOARD_INPROCESS_WORKERS")
    worker_concurrency: int = Field(
        default=64, ge=1, le=1000, alias="SWITCHBOARD_WORKER_CONCURRENCY"
    )
    worker_drain_seconds: float = Field(
        default=30.0, ge=0, le=3600, alias="SWITCHBOARD_WORKER_DRAIN_SECONDS"
    )
    queue_patience: float = Field(default=20.0, gt=0, alias="SWITCHBOARD_QUEUE_PATIENCE")
    #: Finished inbox rows and succeeded/cancelled queue jobs are deleted after this long.
    queue_retention_hours: float = Field(
        default=72.0, ge=1, alias="SWITCHBOARD_QUEUE_RETENTION_HOURS"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _MappingEnvSource(settings_cls))

    @field_validator("eval_sample", mode="before")
    @classmethod
    def _parse_share(cls, value: Any) -> Any:
        """``0.05`` or ``5%``; empty is 0."""
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return 0.0
            try:
                share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
            except ValueError:
                raise ValueError(f"expected a share like 0.05 or 5%, got {text!r}") from None
            value = share
        if isinstance(value, int | float) and not 0 <= value <= 1:
            raise ValueError("expected a share between 0 and 1 (or 0% to 100%)")
        return value

    @field_validator("judge_model", mode="before")
    @classmethod
    def _blank_model(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("fallback_models", "http_allowed_hosts", "holidays", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("http_allowed_hosts")
    @classmethod
    def _check_allowed_hosts(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_allow_entry(entry)  # raises ValueError naming the bad entry
        return value

    @field_validator("user_rate", "channel_rate")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        Rate.parse(value)  # raises ValueError with the accepted forms
        return value

    @field_validator("link_domains", mode="before")
    @classmethod
    def _split_domains(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    @field_validator("link_domains")
    @classmethod
    def _check_domains(cls, value: list[str]) -> list[str]:
        for domain in value:
            LinkPolicy.check_domain(domain)  # raises ValueError naming the bad entry
        return value

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _empty_port(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("skills_dirs", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(":") if part.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme in {"postgresql", "postgres"}:
            # Accept the plain form people copy from their provider and use the async driver.
            return "postgresql+asyncpg" + value[len(scheme) :]
        if scheme == "sqlite":
            return "sqlite+aiosqlite" + value[len(scheme) :]
        if scheme not in _SQL_SCHEMES:
            raise ValueError(
                "expected postgresql+asyncpg://user@host/db or sqlite+aiosqlite:///path"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in _REDIS_SCHEMES or (parts.scheme != "unix" and not parts.hostname):
            raise ValueError("expected redis://host:port/db, rediss://… or unix:///path")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("expected an http(s) URL such as https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @field_validator("weekend")
    @classmethod
    def _check_weekend(cls, value: str) -> str:
        parse_weekend(value)  # raises ValueError with the accepted forms
        return value

    @field_validator("holidays")
    @classmethod
    def _check_holidays(cls, value: list[str]) -> list[str]:
        for day in value:
            try:
                date.fromisoformat(day)
            except ValueError:
                raise ValueError(f"{day!r} is not an ISO date like 2026-12-25") from None
        return value

    @field_validator("log_format")
    @classmethod
    def _check_log_format(cls, value: str) -> str:
        fmt = value.strip().lower()
        if fmt not in {"text", "json"}:
            raise ValueError("expected text or json")
        return fmt

    @field_validator("model_prices", "google_cloud_project", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("model_prices")
    @classmethod
    def _check_model_prices(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                PriceTable.load(value)
            except PriceError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("metrics_port")
    @classmethod
    def _check_metrics_port(cls, value: int | None, info: Any) -> int | None:
        if value is not None and value == info.data.get("port"):
            raise ValueError("must differ from PORT (it moves /metrics off the public port)")
        return value

    def price_table(self) -> PriceTable:
        """Model prices: SWITCHBOARD_MODEL_PRICES on top of the defaults, else the defaults."""
        if self.model_prices is None:
            return PriceTable.defaults()
        try:
            return PriceTable.load(self.model_prices)
        except PriceError as exc:  # the file changed since start-up
            raise ConfigError("SWITCHBOARD_MODEL_PRICES", str(exc)) from None

    @property
    def memory_ttl(self) -> timedelta:
        return timedelta(seconds=self.memory_ttl_seconds)

    @property
    def uses_embedded_sql(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def uses_embedded_redis(self) -> bool:
        return self.redis_url is None

    @property
    def runtime_slots(self) -> int:
        """Concurrent runs per process: ``SWITCHBOARD_MAX_CONCURRENT_RUNS`` when set, else
        the worker's concurrency (model calls are I/O; a worker runs 64 turns at once)."""
        if "max_concurrent_runs" in self.model_fields_set:
            return self.max_concurrent_runs
        return max(self.max_concurrent_runs, self.worker_concurrency)

    @property
    def uses_durable_queue(self) -> bool:
        """The run queue lives in PostgreSQL (shared by processes), not in this process."""
        return not self.uses_embedded_sql

    def check_receive_only(self) -> None:
        """A receiver without workers needs a queue other processes can read."""
        if not self.inprocess_workers and not self.uses_durable_queue:
            raise ConfigError(
                "SWITCHBOARD_INPROCESS_WORKERS",
                "0 needs DATABASE_URL on PostgreSQL (the embedded queue lives in this process)",
            )

    def require(self, *names: str) -> None:
        """Fail with a :class:`ConfigError` if a variable a command needs is unset."""
        for name in names:
            field = next(
                (f for f, info in type(self).model_fields.items() if info.alias == name), None
            )
            if field is None or not getattr(self, field):
                raise ConfigError(name, "required for this command but not set")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default: the process environment)."""
        token = _ENV_OVERRIDE.set(env)
        try:
            settings = cls()
        except ValidationError as exc:
            raise _config_error(exc) from None
        finally:
            _ENV_OVERRIDE.reset(token)
        configured = settings.audit_key.get_secret_value() if settings.audit_key else None
        try:  # SWITCHBOARD_AUDIT_KEY: well-formed, and required outside embedded mode
            check_audit_key(settings.database_url, configured)
        except AuditKeyError as exc:
            raise ConfigError("SWITCHBOARD_AUDIT_KEY", str(exc)) from None
        return settings

    def audit_keyring(self) -> AuditKeyring:
        """The audit chain's keys (``storage.audit.keyring_for``): SWITCHBOARD_AUDIT_KEY, or
        in embedded mode a key file made once beside the SQLite database."""
        configured = self.audit_key.get_secret_value() if self.audit_key else None
        try:
            return keyring_for(self.database_url, configured)
        except AuditKeyError as exc:
            raise ConfigError("SWITCHBOARD_AUDIT_KEY", str(exc)) from None


def _config_error(exc: ValidationError) -> ConfigError:
    error = exc.errors()[0]
    loc = error.get("loc") or ("?",)
    field = str(loc[0])
    info = Settings.model_fields.get(field)
    name = (info.alias if info and info.alias else field).upper()
    known = {i.alias for i in Settings.model_fields.values() if i.alias}
    if field.upper() in known:
        name = field.upper()
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    return ConfigError(name, f"invalid value ({message})")
