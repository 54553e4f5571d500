"""Turn a model string (`offline`, `openai:gpt-4.1-mini`, …) into a chat model.

Everything that can be wrong with a model string is found here, before the first call,
and reported as one `ModelConfigError` sentence: a malformed string, a provider package
that is not installed, a missing API key. Provider settings come from an explicit `env`
mapping (the process environment by default) and are passed to the provider class as
arguments, so tests never need to touch `os.environ`.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from pydantic import ValidationError

from skills.models._errors import (
    MissingCredentialsError,
    MissingProviderPackageError,
    ModelInitError,
    UnknownModelSpecError,
)
from skills.models.masked import ensure_masked, unmasked
from skills.models.offline import OfflineChatModel

__all__ = ["LOCAL_SERVER_API_KEY", "OFFLINE", "PROVIDERS", "load_chat_model", "model_label"]

OFFLINE = "offline"

LOCAL_SERVER_API_KEY = "not-needed"
"""Sent as the OpenAI key when only `OPENAI_BASE_URL` is set: local servers ignore it."""

_METADATA_KEY = "switchboard_model"
_SPEC = re.compile(r"^(?P<provider>[A-Za-z][\w-]*):(?P<model>\S+)$")

_Configure = Callable[[str, Mapping[str, str], dict[str, Any]], None]


def _configure_openai(spec: str, env: Mapping[str, str], kwargs: dict[str, Any]) -> None:
    base_url = kwargs.get("base_url") or env.get("OPENAI_BASE_URL") or env.get("OPENAI_API_BASE")
    api_key = kwargs.get("api_key") or env.get("OPENAI_API_KEY")
    if not api_key and not base_url:
        raise MissingCredentialsError(
            spec, variable="OPENAI_API_KEY", alternative="OPENAI_BASE_URL for a compatible server"
        )
    kwargs["api_key"] = api_key or LOCAL_SERVER_API_KEY
    if base_url:
        kwargs["base_url"] = base_url


def _configure_anthropic(spec: str, env: Mapping[str, str], kwargs: dict[str, Any]) -> None:
    api_key = kwargs.get("api_key") or env.get("ANTHROPIC_API_KEY")
    if not api_key:
        raise MissingCredentialsError(spec, variable="ANTHROPIC_API_KEY")
    kwargs["api_key"] = api_key
    if "base_url" not in kwargs and env.get("ANTHROPIC_BASE_URL"):
        kwargs["base_url"] = env["ANTHROPIC_BASE_URL"]


def _configure_vertexai(spec: str, env: Mapping[str, str], kwargs: dict[str, Any]) -> None:
    # Vertex AI authenticates with Application Default Credentials, not a key.
    if "project" not in kwargs and env.get("GOOGLE_CLOUD_PROJECT"):
        kwargs["project"] = env["GOOGLE_CLOUD_PROJECT"]


def _configure_ollama(spec: str, env: Mapping[str, str], kwargs: dict[str, Any]) -> None:
    if "base_url" not in kwargs and env.get("OLLAMA_HOST"):
        kwargs["base_url"] = env["OLLAMA_HOST"]


@dataclass(frozen=True, slots=True)
class _Provider:
    package: str
    module: str
    extra: str | None  # our optional-dependency group; None for a core dependency
    configure: _Configure
    retries: bool = True  # whether the class takes `max_retries`
    timeout_in_client_kwargs: bool = False

    @property
    def install(self) -> str:
        if self.extra is None:
            return f"pip install {self.package}"
        return f"pip install 'switchboard[{self.extra}]'"


PROVIDERS: Mapping[str, _Provider] = {
    "openai": _Provider("langchain-openai", "langchain_openai", None, _configure_openai),
    "anthropic": _Provider(
        "langchain-anthropic", "langchain_anthropic", "anthropic", _configure_anthropic
    ),
    "google_vertexai": _Provider(
        "langchain-google-vertexai", "langchain_google_vertexai", "vertexai", _configure_vertexai
    ),
    "ollama": _Provider(
        "langchain-ollama",
        "langchain_ollama",
        "ollama",
        _configure_ollama,
        retries=False,
        timeout_in_client_kwargs=True,
    ),
}
"""The providers Switchboard supports, by their `init_chat_model` prefix."""


def load_chat_model(
    spec: str,
    *,
    timeout: float | None = None,
    max_retries: int = 0,
    env: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> BaseChatModel:
    """Build the chat model a model string names.

    `spec` is `offline` or `provider:model` for a provider in `PROVIDERS`. Credentials and
    endpoints are read from `env` (default: the process environment) and passed on
    explicitly; for OpenAI, `OPENAI_BASE_URL` alone is enough (local OpenAI-compatible
    servers need no key). `max_retries` defaults to 0 because the runtime owns retries.
    Extra `kwargs` go to the provider's chat model class.

    The model comes wrapped in `skills.models.masked.MaskedChatModel`: whatever it is sent
    has personal data masked first, whichever code path sends it.

    Raises:
        ModelConfigError: the string is malformed, the provider package is missing, the
            API key is missing, or the provider rejected the settings.
    """
    cleaned = spec.strip()
    if cleaned.lower() == OFFLINE:
        return ensure_masked(OfflineChatModel(metadata={_METADATA_KEY: OFFLINE}))
    match = _SPEC.match(cleaned)
    provider_name = match.group("provider").lower().replace("-", "_") if match else ""
    provider = PROVIDERS.get(provider_name)
    if match is None or provider is None:
        raise UnknownModelSpecError(spec, providers=[OFFLINE, *PROVIDERS])
    label = f"{provider_name}:{match.group('model')}"
    try:
        importlib.import_module(provider.module)
    except ImportError:
        raise MissingProviderPackageError(
            spec, package=provider.package, install=provider.install
        ) from None

    settings = dict(kwargs)
    provider.configure(spec, os.environ if env is None else env, settings)
    if timeout is not None:
        if provider.timeout_in_client_kwargs:
            settings["client_kwargs"] = {**settings.get("client_kwargs", {}), "timeout": timeout}
        else:
            settings["timeout"] = timeout
    if provider.retries:
        settings["max_retries"] = max_retries
    settings["metadata"] = {**settings.get("metadata", {}), _METADATA_KEY: label}
    secrets = [str(v) for k, v in settings.items() if "key" in k.lower() and v]
    try:
        model = init_chat_model(label, **settings)
    except ValidationError as exc:
        fields = sorted(
            {".".join(str(p) for p in error["loc"]) or "model" for error in exc.errors()}
        )
        raise ModelInitError(spec, detail=f"invalid setting(s) {', '.join(fields)}") from None
    except (ValueError, TypeError) as exc:
        raise ModelInitError(spec, detail=_redact(str(exc), secrets)) from None
    if not isinstance(model, BaseChatModel):
        raise ModelInitError(spec, detail=f"{provider.package} returned {type(model).__name__}")
    return ensure_masked(model)


def model_label(model: BaseChatModel | Runnable[Any, Any]) -> str:
    """A short name for run records, e.g. `offline` or `openai:gpt-4.1-mini`.

    Models built by `load_chat_model` carry their model string; for others it is pieced
    together from the provider and model name langchain reports for tracing.
    """
    model = unmasked(model)
    if isinstance(model, OfflineChatModel):
        return OFFLINE
    if not isinstance(model, BaseChatModel):
        return type(model).__name__
    stored = (model.metadata or {}).get(_METADATA_KEY)
    if isinstance(stored, str):
        return stored
    params = model._get_ls_params()
    provider, name = params.get("ls_provider"), params.get("ls_model_name")
    return f"{provider}:{name}" if provider and name else model._llm_type


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    first_line = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return first_line[:200]
