"""The one place every model input is built: a chat model that masks what it is sent.

`MaskedChatModel` wraps a provider's chat model. Whatever reaches it — a router's
structured-output call, an agent turn with tools bound, a summarization or fallback call,
the eval judge, anything added later — has card numbers, IBANs, e-mails and phone numbers
masked (`skills.pii.mask_text`) in every message, content block, tool-call argument and
``additional_kwargs`` value *before* the provider or a tracing callback sees it. Text that
is already masked or tokenized (``[card ****1111 #pii:…]``) passes unchanged, so the agent
middleware's tokens still reach the model as the model must see them.

`load_chat_model` returns models wrapped, and the runtime wraps whatever its model
factory returns (`ensure_masked`), so no code path can hand a raw model to a provider.

Bindings stay masked: `bind_tools` and `with_structured_output` ask the wrapped model for
its binding and re-point it at the wrapper (a ``RunnableBinding`` whose ``bound`` is the
provider model becomes one bound to the wrapper, inside whatever sequence, map or
fallbacks the provider built). If a provider ever returns a runnable that would call the
raw model some other way, `UnmaskablePathError` is raised at binding time, not a leak at
call time.

Inputs larger than `skills.pii.OFFLOAD_CHARS` are masked in a worker thread on the async
paths, so a long thread or tool result never stalls the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableParallel,
    RunnableSequence,
    RunnableWithFallbacks,
)
from langchain_core.runnables.passthrough import RunnableAssign
from langchain_core.tools import BaseTool
from pydantic import ConfigDict

from skills.pii import OFFLOAD_CHARS, mask_obj, mask_text

__all__ = ["MaskedChatModel", "UnmaskablePathError", "ensure_masked", "mask_messages", "unmasked"]

# Content-block fields that carry opaque data the provider must get back byte for byte
# (signatures, encrypted reasoning, ids) or binary payloads; never rewritten.
_OPAQUE_FIELDS = frozenset({"data", "base64", "signature", "encrypted_content", "id"})


class UnmaskablePathError(RuntimeError):
    """A provider binding would reach the raw model without passing through the mask."""

    def __init__(self, what: str, where: str) -> None:
        self.what = what
        self.where = where
        super().__init__(
            f"{what} returned a runnable that calls the provider model directly ({where}); "
            "Switchboard cannot mask its input, so it refuses to use it"
        )


# ---------------------------------------------------------------------- masking messages


def _mask_block(block: Any) -> Any:
    if isinstance(block, str):
        return block if block.startswith("data:") else mask_text(block)
    if isinstance(block, dict):
        return {
            key: value if key in _OPAQUE_FIELDS else _mask_block(value)
            for key, value in block.items()
        }
    if isinstance(block, list):
        return [_mask_block(item) for item in block]
    return mask_obj(block)


def _mask_message(message: BaseMessage) -> BaseMessage:
    update: dict[str, Any] = {}
    content = _mask_block(message.content)
    if content != message.content:
        update["content"] = content
    if message.additional_kwargs:
        extra = _mask_block(message.additional_kwargs)
        if extra != message.additional_kwargs:
            update["additional_kwargs"] = extra
    if isinstance(message, AIMessage):
        calls = [{**call, "args": mask_obj(call["args"])} for call in message.tool_calls]
        if calls != message.tool_calls:
            update["tool_calls"] = calls
        invalid = [
            {**call, "args": mask_obj(call["args"]) if call.get("args") else call.get("args")}
            for call in message.invalid_tool_calls
        ]
        if invalid != message.invalid_tool_calls:
            update["invalid_tool_calls"] = invalid
    artifact = getattr(message, "artifact", None)
    if artifact is not None:
        masked = mask_obj(artifact)
        if masked != artifact:
            update["artifact"] = masked
    return message.model_copy(update=update) if update else message


def mask_messages(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """``messages`` with personal data masked everywhere a provider would read it."""
    return [_mask_message(message) for message in messages]


def _size(messages: Sequence[BaseMessage]) -> int:
    total = 0
    for message in messages:
        content = message.content
        total += len(content) if isinstance(content, str) else len(str(content))
        if isinstance(message, AIMessage) and message.tool_calls:
            total += len(str(message.tool_calls))
    return total


async def _amask(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    if _size(messages) > OFFLOAD_CHARS:
        return await asyncio.to_thread(mask_messages, messages)
    return mask_messages(messages)


# ---------------------------------------------------------------------- the wrapper


class MaskedChatModel(BaseChatModel):
    """A chat model that masks every input before delegating to ``inner``.

    Construct with `ensure_masked` (idempotent). Callbacks, tags and metadata of the inner
    model are adopted, and tracing parameters are the inner model's, so run records and
    traces look as they did; the inner model's cache and rate limiter are not used (the
    wrapper calls its generation methods directly).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseChatModel

    # -- what the wrapper reports about itself: the inner model's identity ----------------

    @property
    def _llm_type(self) -> str:
        return self.inner._llm_type

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return dict(self.inner._identifying_params)

    @property
    def model_name(self) -> str | None:
        """The provider's model name (create_agent reads it to pick a strategy)."""
        name = getattr(self.inner, "model_name", None) or getattr(self.inner, "model", None)
        return name if isinstance(name, str) else None

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        return self.inner._get_ls_params(stop=stop, **kwargs)

    def _get_invocation_params(
        self, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        return self.inner._get_invocation_params(stop=stop, **kwargs)

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        return self.inner.get_num_tokens_from_messages(mask_messages(messages), tools)

    def _streaming_disabled(self, **kwargs: Any) -> bool:
        return self.inner._streaming_disabled(**kwargs)

    def _should_stream(
        self,
        *,
        async_api: bool,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> bool:
        return self.inner._should_stream(async_api=async_api, run_manager=run_manager, **kwargs)

    def _should_use_protocol_streaming(
        self,
        *,
        async_api: bool,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> bool:
        return self.inner._should_use_protocol_streaming(
            async_api=async_api, run_manager=run_manager, **kwargs
        )

    # -- public entry points: mask first, then the usual BaseChatModel machinery ---------

    def generate(self, messages: list[list[BaseMessage]], *args: Any, **kwargs: Any) -> LLMResult:
        return super().generate([mask_messages(m) for m in messages], *args, **kwargs)

    async def agenerate(
        self, messages: list[list[BaseMessage]], *args: Any, **kwargs: Any
    ) -> LLMResult:
        masked = [await _amask(m) for m in messages]
        return await super().agenerate(masked, *args, **kwargs)

    def stream(self, input: LanguageModelInput, *args: Any, **kwargs: Any) -> Iterator[Any]:
        messages = mask_messages(self._convert_input(input).to_messages())
        yield from super().stream(messages, *args, **kwargs)

    async def astream(
        self, input: LanguageModelInput, *args: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:
        messages = await _amask(self._convert_input(input).to_messages())
        async for chunk in super().astream(messages, *args, **kwargs):
            yield chunk

    def _chat_model_stream_v3(self, input: LanguageModelInput, *args: Any, **kwargs: Any) -> Any:
        messages = mask_messages(self._convert_input(input).to_messages())
        return super()._chat_model_stream_v3(messages, *args, **kwargs)

    async def _achat_model_stream_v3(
        self, input: LanguageModelInput, *args: Any, **kwargs: Any
    ) -> Any:
        messages = await _amask(self._convert_input(input).to_messages())
        return await super()._achat_model_stream_v3(messages, *args, **kwargs)

    # -- generation: the inner model's, with messages the entry points masked ------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self.inner._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await self.inner._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        return self.inner._stream(messages, stop=stop, run_manager=run_manager, **kwargs)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        async for chunk in self.inner._astream(
            messages, stop=stop, run_manager=run_manager, **kwargs
        ):
            yield chunk

    # -- bindings: the provider's, re-pointed at the wrapper -----------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        bound = self.inner.bind_tools(tools, **kwargs)
        return self._rebind(bound, "bind_tools")  # type: ignore[no-any-return]

    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        built = self.inner.with_structured_output(schema, include_raw=include_raw, **kwargs)
        return self._rebind(built, "with_structured_output")  # type: ignore[no-any-return]

    def _rebind(self, runnable: Any, what: str) -> Any:
        rebound = _repoint(runnable, self.inner, self)
        where = _find(rebound, self.inner, "result", depth=0, seen=set())
        if where is not None:
            raise UnmaskablePathError(f"{type(self.inner).__name__}.{what}", where)
        return rebound


def _repoint(node: Any, raw: BaseChatModel, masked: MaskedChatModel) -> Any:
    """``node`` with every reference to ``raw`` in the runnables langchain composes
    bindings from (bindings, sequences, maps, assigns, fallbacks) replaced by ``masked``."""
    if node is raw:
        return masked
    if isinstance(node, RunnableBinding):
        bound = _repoint(node.bound, raw, masked)
        return node if bound is node.bound else node.model_copy(update={"bound": bound})
    if isinstance(node, RunnableSequence):
        steps = [_repoint(step, raw, masked) for step in node.steps]
        if all(a is b for a, b in zip(steps, node.steps, strict=True)):
            return node
        return RunnableSequence(*steps, name=node.name)
    if isinstance(node, RunnableParallel):
        branches = {key: _repoint(step, raw, masked) for key, step in node.steps__.items()}
        if all(branches[key] is node.steps__[key] for key in branches):
            return node
        return RunnableParallel(branches)
    if isinstance(node, RunnableAssign):
        mapper = _repoint(node.mapper, raw, masked)
        return node if mapper is node.mapper else RunnableAssign(mapper)
    if isinstance(node, RunnableWithFallbacks):
        primary = _repoint(node.runnable, raw, masked)
        fallbacks = [_repoint(f, raw, masked) for f in node.fallbacks]
        return node.model_copy(update={"runnable": primary, "fallbacks": fallbacks})
    return node


def _find(node: Any, target: Any, path: str, *, depth: int, seen: set[int]) -> str | None:
    """Where ``target`` is still reachable from ``node`` (fields, containers, closures)."""
    if node is target:
        return path
    if depth > 12 or id(node) in seen or isinstance(node, MaskedChatModel):
        return None
    seen.add(id(node))
    children: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        children = [(f"{path}[{key!r}]", value) for key, value in node.items()]
    elif isinstance(node, list | tuple):
        children = [(f"{path}[{index}]", value) for index, value in enumerate(node)]
    elif isinstance(node, Runnable):
        fields = getattr(type(node), "model_fields", {})
        children = [(f"{path}.{name}", getattr(node, name, None)) for name in fields]
        func = getattr(node, "func", None) or getattr(node, "afunc", None)
        for index, cell in enumerate(getattr(func, "__closure__", None) or ()):
            try:
                children.append((f"{path}.<closure {index}>", cell.cell_contents))
            except ValueError:  # an empty cell
                continue
    for child_path, child in children:
        found = _find(child, target, child_path, depth=depth + 1, seen=seen)
        if found is not None:
            return found
    return None


def ensure_masked(model: BaseChatModel) -> MaskedChatModel:
    """``model`` behind the mask (itself when it already is)."""
    if isinstance(model, MaskedChatModel):
        return model
    return MaskedChatModel(
        inner=model,
        callbacks=model.callbacks,
        tags=model.tags,
        metadata=model.metadata,
        verbose=model.verbose,
        profile=model.profile,
        output_version=model.output_version,
        disable_streaming=model.disable_streaming,
    )


def unmasked(model: BaseChatModel | Runnable[Any, Any]) -> Any:
    """The provider model behind a wrapper or binding, for identification only (labels,
    "is this the offline model?"); never call it."""
    while isinstance(model, RunnableBinding):
        model = model.bound
    while isinstance(model, MaskedChatModel):
        model = model.inner
    return model
