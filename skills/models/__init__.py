"""Chat models: turn a model string into a langchain chat model.

`load_chat_model("offline")` gives the deterministic `OfflineChatModel` (no network);
`load_chat_model("openai:gpt-4.1-mini")` and friends go through langchain's
`init_chat_model` after the string, the provider package and the credentials have been
checked, so configuration mistakes surface as one `ModelConfigError` sentence. Every
model comes behind `MaskedChatModel` (`skills.models.masked`): no input reaches a provider
unmasked.
"""

from skills.models._errors import (
    MissingCredentialsError,
    MissingProviderPackageError,
    ModelConfigError,
    ModelInitError,
    UnknownModelSpecError,
)
from skills.models._loader import OFFLINE, PROVIDERS, load_chat_model, model_label
from skills.models.masked import MaskedChatModel, UnmaskablePathError, ensure_masked, unmasked
from skills.models.offline import OfflineChatModel, keyword_route

__all__ = [
    "OFFLINE",
    "PROVIDERS",
    "MaskedChatModel",
    "MissingCredentialsError",
    "MissingProviderPackageError",
    "ModelConfigError",
    "ModelInitError",
    "OfflineChatModel",
    "UnknownModelSpecError",
    "UnmaskablePathError",
    "ensure_masked",
    "keyword_route",
    "load_chat_model",
    "model_label",
    "unmasked",
]
