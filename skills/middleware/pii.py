"""Agent middleware that keeps personal data away from the model and out of stored state.

`PiiMiddleware` plugs into ``langchain.agents.create_agent`` and tokenizes card numbers,
IBANs, e-mails and phone numbers with a `skills.pii.PiiVault` (see that module for the
token format and detection rules):

* **Before every model call** (``before_model``) every message in the state — human, AI
  (text and tool-call arguments), tool and system — is rewritten with tokens *in the
  state*, so the checkpointer stores tokens, not raw values. Then, inside
  ``wrap_model_call`` / ``awrap_model_call``, the request's messages and system message
  are tokenized once more (a backstop for anything another middleware added on the way),
  and the model's reply is tokenized before it enters the state or reaches Slack.
* **Around every tool call** (``wrap_tool_call`` / ``awrap_tool_call``) tokens in the
  arguments are resolved to the originals right before the tool runs — so an HTTP tool
  gets the real card number the user typed, although the model only saw
  ``[card ****1111 #pii:3f2a9c1b]`` — and the tool's result (``ToolMessage`` content and
  artifact, or the messages of a returned ``Command``) is tokenized before the model or
  the state sees it. Tools named in ``keep_masked_tools`` (e.g. one that posts to Slack)
  receive the tokens unresolved.

Where the originals live: in the agent state, under the ``pii_vault`` key declared by
`PiiAgentState`, as token id -> *sealed* original. The key is never sent to the model,
is left out of the agent's output, and is checkpointed with the thread, so a token keeps
resolving on the next Slack message of the same thread. Sealing is pluggable
(`skills.pii.VaultSealer`): `CipherSealer` stores each original encrypted (Fernet) and
is the production choice; `InMemorySealer` stores only random handles and keeps the
originals in process memory (lost on restart; tokens then reach tools unresolved). Each
thread's state references only its own entries, so a token copied from another thread
does not resolve.

One gap the middleware cannot close alone: LangGraph checkpoints the raw input of a run
before any middleware hook runs. Callers that start runs from user text should build the
input with `PiiMiddleware.prepare_input`, which tokenizes it and carries the sealed vault
entries in, so even that first checkpoint holds no raw value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import Annotated, Any, NotRequired, TypeVar

from langchain.agents.middleware.types import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
    OmitFromOutput,
    ResponseT,
)
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.runtime import Runtime
from langgraph.types import Command
from langgraph.typing import ContextT

from skills.pii import OFFLOAD_CHARS, PiiVault, VaultSealer, seal_entries, unseal_entries

__all__ = ["PiiAgentState", "PiiMiddleware", "merge_vault"]

VAULT_KEY = "pii_vault"

_M = TypeVar("_M", bound=BaseMessage)

# Content-block fields that carry opaque data the provider must get back byte for byte
# (signatures, encrypted reasoning) or binary payloads; never rewritten.
_OPAQUE_FIELDS = frozenset({"data", "base64", "signature", "encrypted_content", "id"})


def merge_vault(left: Mapping[str, str] | None, right: Mapping[str, str] | None) -> dict[str, str]:
    """State reducer for ``pii_vault``: entries accumulate; parallel tool calls may all add."""
    return {**(left or {}), **(right or {})}


class PiiAgentState(AgentState[Any]):
    """Agent state with the thread's sealed PII vault (token id -> sealed original)."""

    pii_vault: NotRequired[Annotated[dict[str, str], OmitFromOutput, merge_vault]]


class PiiMiddleware(AgentMiddleware[PiiAgentState, ContextT, ResponseT]):
    """Tokenizes personal data before the model sees it and resolves it only for tools.

    Put it first in ``middleware=[...]`` so it wraps every other model and tool wrapper:
    whatever they add to a request is tokenized before it reaches the model, and tools
    they call see resolved arguments.
    """

    state_schema = PiiAgentState

    def __init__(
        self,
        *,
        key: bytes,
        sealer: VaultSealer,
        keep_masked_tools: Collection[str] = frozenset(),
    ) -> None:
        """Create the middleware.

        Args:
            key: secret (at least 16 bytes) for token ids; keep it stable across restarts
                and replicas so a value keeps its token within a thread.
            sealer: how vault originals are stored in the state (see module docstring).
            keep_masked_tools: names of tools that must receive tokens, not originals.
        """
        super().__init__()
        PiiVault(key=key)  # validates the key now rather than on the first message
        self._key = key
        self._sealer = sealer
        self._keep_masked_tools = frozenset(keep_masked_tools)

    # ------------------------------------------------------------------ vault plumbing

    def _vault(self, state: Mapping[str, Any] | None) -> PiiVault:
        sealed: Mapping[str, str] = (state or {}).get(VAULT_KEY) or {}
        return PiiVault(key=self._key, entries=unseal_entries(sealed, self._sealer))

    def _sealed_new(self, vault: PiiVault) -> dict[str, str]:
        return seal_entries(vault.take_new(), self._sealer)

    def prepare_input(self, message: str | HumanMessage) -> dict[str, Any]:
        """Agent input for a new user message, tokenized, with its sealed vault entries.

        ``agent.invoke(middleware.prepare_input(text), config)`` keeps raw values out of
        the very first checkpoint of the run; the entries merge into the thread's vault.
        """
        vault = PiiVault(key=self._key)
        human = message if isinstance(message, HumanMessage) else HumanMessage(content=message)
        return {"messages": [_tokenize_message(human, vault)], VAULT_KEY: self._sealed_new(vault)}

    # ------------------------------------------------------------------ state hook

    def before_model(
        self, state: PiiAgentState, runtime: Runtime[ContextT]
    ) -> dict[str, Any] | None:
        """Rewrite every message in the state with tokens, so storage holds no raw values."""
        vault = self._vault(state)
        changed: list[AnyMessage] = []
        for message in state["messages"]:
            tokenized = _tokenize_message(message, vault)
            if tokenized is not message:
                changed.append(tokenized)
        new_entries = self._sealed_new(vault)
        if not changed and not new_entries:
            return None
        update: dict[str, Any] = {}
        if changed:
            update["messages"] = changed  # same ids: add_messages replaces them in place
        if new_entries:
            update[VAULT_KEY] = new_entries
        return update

    async def abefore_model(
        self, state: PiiAgentState, runtime: Runtime[ContextT]
    ) -> dict[str, Any] | None:
        """Async `before_model`; CPU-only, in a worker thread when the state is large."""
        if _large(state["messages"]):
            return await asyncio.to_thread(self.before_model, state, runtime)
        return self.before_model(state, runtime)

    # ------------------------------------------------------------------ model calls

    def _tokenized_request(
        self, request: ModelRequest[ContextT], vault: PiiVault
    ) -> ModelRequest[ContextT]:
        messages = [_tokenize_message(message, vault) for message in request.messages]
        system = request.system_message
        if system is not None:
            system = _tokenize_message(system, vault)
        return request.override(messages=messages, system_message=system)

    def _tokenized_response(
        self, response: ModelResponse[ResponseT], vault: PiiVault
    ) -> ModelResponse[ResponseT] | ExtendedModelResponse[ResponseT]:
        masked = ModelResponse(
            result=[_tokenize_message(message, vault) for message in response.result],
            structured_response=response.structured_response,
        )
        new_entries = self._sealed_new(vault)
        if not new_entries:
            return masked
        return ExtendedModelResponse(
            model_response=masked, command=Command(update={VAULT_KEY: new_entries})
        )

    def wrap_model_call(
        self,
        request: ModelRequest[ContextT],
        handler: Callable[[ModelRequest[ContextT]], ModelResponse[ResponseT]],
    ) -> ModelResponse[ResponseT] | AIMessage | ExtendedModelResponse[ResponseT]:
        """Call the model with a tokenized request; tokenize its reply."""
        vault = self._vault(request.state)
        response = handler(self._tokenized_request(request, vault))
        return self._tokenized_response(response, vault)

    async def awrap_model_call(
        self,
        request: ModelRequest[ContextT],
        handler: Callable[[ModelRequest[ContextT]], Awaitable[ModelResponse[ResponseT]]],
    ) -> ModelResponse[ResponseT] | AIMessage | ExtendedModelResponse[ResponseT]:
        """Async `wrap_model_call`; large requests are tokenized in a worker thread."""
        vault = self._vault(request.state)
        if _large(request.messages):
            tokenized = await asyncio.to_thread(self._tokenized_request, request, vault)
        else:
            tokenized = self._tokenized_request(request, vault)
        response = await handler(tokenized)
        return self._tokenized_response(response, vault)

    # ------------------------------------------------------------------ tool calls

    def _resolved_request(self, request: ToolCallRequest, vault: PiiVault) -> ToolCallRequest:
        if request.tool_call["name"] in self._keep_masked_tools:
            return request
        args = vault.detokenize(request.tool_call["args"])
        return request.override(tool_call={**request.tool_call, "args": args})

    def _tokenized_result(
        self, result: ToolMessage | Command[Any], vault: PiiVault
    ) -> ToolMessage | Command[Any]:
        if isinstance(result, ToolMessage):
            message = _tokenize_message(result, vault)
            new_entries = self._sealed_new(vault)
            if not new_entries:
                return message
            return Command(update={"messages": [message], VAULT_KEY: new_entries})
        update = result.update
        if not isinstance(update, dict) or "messages" not in update:
            return result
        messages = [
            _tokenize_message(m, vault) if isinstance(m, BaseMessage) else vault.tokenize_obj(m)
            for m in update["messages"]
        ]
        new_entries = self._sealed_new(vault)
        vault_update = merge_vault(update.get(VAULT_KEY), new_entries)
        return replace(result, update={**update, "messages": messages, VAULT_KEY: vault_update})

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        """Run the tool with real values in its arguments; tokenize what it returns."""
        vault = self._vault(request.state)
        return self._tokenized_result(handler(self._resolved_request(request, vault)), vault)

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        """Async `wrap_tool_call`; a large result is tokenized in a worker thread."""
        vault = self._vault(request.state)
        result = await handler(self._resolved_request(request, vault))
        if isinstance(result, ToolMessage) and _large([result]):
            return await asyncio.to_thread(self._tokenized_result, result, vault)
        return self._tokenized_result(result, vault)


# ---------------------------------------------------------------------- message rewriting


def _large(messages: Sequence[BaseMessage]) -> bool:
    """Whether tokenizing ``messages`` is worth a worker thread (`OFFLOAD_CHARS`)."""
    total = 0
    for message in messages:
        content = message.content
        total += len(content) if isinstance(content, str) else len(str(content))
        if total > OFFLOAD_CHARS:
            return True
    return False


def _tokenize_block(block: Any, vault: PiiVault) -> Any:
    """A content block (or nested value in one) with its text tokenized."""
    if isinstance(block, str):
        return block if block.startswith("data:") else vault.tokenize(block)
    if isinstance(block, dict):
        return {
            key: value if key in _OPAQUE_FIELDS else _tokenize_block(value, vault)
            for key, value in block.items()
        }
    if isinstance(block, list):
        return [_tokenize_block(item, vault) for item in block]
    return vault.tokenize_obj(block)


def _tokenize_message(message: _M, vault: PiiVault) -> _M:
    """``message`` with tokens in its content (and tool-call args / artifact); same object
    when nothing changed, so callers can tell what to write back."""
    update: dict[str, Any] = {}
    content = _tokenize_block(message.content, vault)
    if content != message.content:
        update["content"] = content
    if isinstance(message, AIMessage):
        tool_calls = [
            {**call, "args": vault.tokenize_obj(call["args"])} for call in message.tool_calls
        ]
        if tool_calls != message.tool_calls:
            update["tool_calls"] = tool_calls
        invalid = [
            {**call, "args": vault.tokenize_obj(call["args"])}
            for call in message.invalid_tool_calls
        ]
        if invalid != message.invalid_tool_calls:
            update["invalid_tool_calls"] = invalid
    if isinstance(message, ToolMessage) and message.artifact is not None:
        artifact = vault.tokenize_obj(message.artifact)
        if artifact != message.artifact:
            update["artifact"] = artifact
    return message.model_copy(update=update) if update else message
