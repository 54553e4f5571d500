"""Errors raised while turning a model string into a chat model.

    ModelConfigError                 any model string that cannot become a working model
     ├── UnknownModelSpecError       malformed string or a provider we do not support
     ├── MissingProviderPackageError the provider's integration package is not installed
     ├── MissingCredentialsError     the provider needs an API key that is not set
     └── ModelInitError              the provider's class refused the settings

Every message is one sentence a person can act on, and none ever contains a secret.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "MissingCredentialsError",
    "MissingProviderPackageError",
    "ModelConfigError",
    "ModelInitError",
    "UnknownModelSpecError",
]


class ModelConfigError(Exception):
    """A model string cannot be turned into a working chat model."""

    def __init__(self, spec: str, message: str) -> None:
        self.spec = spec
        super().__init__(message)


class UnknownModelSpecError(ModelConfigError):
    """The model string is malformed or names a provider Switchboard does not support."""

    def __init__(self, spec: str, *, providers: Sequence[str]) -> None:
        self.providers = tuple(providers)
        names = ", ".join(self.providers)
        super().__init__(
            spec,
            f"model {spec!r} is not a model string Switchboard understands: use 'offline' "
            f"or 'provider:model' with provider one of {names} "
            "(for example 'openai:gpt-4.1-mini')",
        )


class MissingProviderPackageError(ModelConfigError):
    """The integration package for the model's provider is not installed."""

    def __init__(self, spec: str, *, package: str, install: str) -> None:
        self.package = package
        self.install = install
        super().__init__(spec, f"model {spec!r} needs the package {package}: {install}")


class MissingCredentialsError(ModelConfigError):
    """The provider needs an API key that is not set."""

    def __init__(self, spec: str, *, variable: str, alternative: str | None = None) -> None:
        self.variable = variable
        hint = f"set {variable}" + (f" (or {alternative})" if alternative else "")
        super().__init__(spec, f"model {spec!r} has no API key: {hint}")


class ModelInitError(ModelConfigError):
    """The provider's chat model class rejected the settings it was given."""

    def __init__(self, spec: str, *, detail: str) -> None:
        self.detail = detail
        super().__init__(spec, f"model {spec!r} could not be configured: {detail}")
