"""The two wrapped chat models: their names, their tool bindings, their profiles, and how to run them.

The wrapper never calls a child's public ``invoke``/``stream`` (that would open a second callback run and count
tokens twice): it calls ``_generate_with_cache`` / ``_stream`` with the wrapper's own run manager, so the child
still applies its cache, rate limiter and response-metadata merge, and every callback sees exactly one run.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Iterator, Mapping

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding


def model_name_of(model: BaseChatModel) -> str:
    """The name a child model goes by (``ls_model_name``, else its ``model_name``/``model``/``model_id``)."""
    try:
        name = model._get_ls_params().get("ls_model_name")
    except Exception:  # a provider's tracing params are best effort; the attributes below are not
        name = None
    for candidate in (
        name,
        getattr(model, "model_name", None),
        getattr(model, "model", None),
        getattr(model, "model_id", None),
    ):
        if isinstance(candidate, str) and candidate:
            return candidate
    return model._llm_type


def binding_kwargs(bound: Runnable, child: BaseChatModel, target: str) -> dict[str, Any]:
    """The call kwargs a child's ``bind_tools`` produced (its own tool format), to apply when it is chosen."""
    if not isinstance(bound, RunnableBinding) or bound.bound is not child:
        raise TypeError(
            f"the {target} model's bind_tools returned {type(bound).__name__}, not model.bind(...); "
            "HybridChatModel can only route between models whose bind_tools binds call kwargs"
        )
    return dict(bound.kwargs)


def merge_profiles(small: Mapping[str, Any] | None, large: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What both children can do: a capability holds if both have it; limits are the smaller one."""
    if not small or not large:
        return None
    merged: dict[str, Any] = {}
    for key in small.keys() & large.keys():
        a, b = small[key], large[key]
        if isinstance(a, bool) and isinstance(b, bool):
            merged[key] = a and b
        elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
            merged[key] = min(a, b)
        elif a == b:
            merged[key] = a
    return merged


def _one_chunk(result: ChatResult) -> ChatGenerationChunk:
    """A non-streaming child's answer as the single, last chunk of a stream."""
    generation = result.generations[0]
    message = AIMessageChunk(**generation.message.model_dump(exclude={"type"}), chunk_position="last")
    return ChatGenerationChunk(message=message, generation_info=generation.generation_info)


def _streams(child: BaseChatModel, async_api: bool, kwargs: Mapping[str, Any]) -> bool:
    return child._should_stream(async_api=async_api, **{**kwargs, "stream": True})


def generate(
    child: BaseChatModel,
    messages: list[BaseMessage],
    stop: list[str] | None,
    run_manager: CallbackManagerForLLMRun | None,
    kwargs: Mapping[str, Any],
) -> ChatResult:
    """One non-streaming answer from ``child``."""
    return child._generate_with_cache(messages, stop=stop, run_manager=run_manager, **kwargs)


async def agenerate(
    child: BaseChatModel,
    messages: list[BaseMessage],
    stop: list[str] | None,
    run_manager: AsyncCallbackManagerForLLMRun | None,
    kwargs: Mapping[str, Any],
) -> ChatResult:
    """Async :func:`generate`."""
    return await child._agenerate_with_cache(messages, stop=stop, run_manager=run_manager, **kwargs)


def stream(
    child: BaseChatModel,
    messages: list[BaseMessage],
    stop: list[str] | None,
    run_manager: CallbackManagerForLLMRun | None,
    kwargs: Mapping[str, Any],
) -> Iterator[ChatGenerationChunk]:
    """The child's chunks (one chunk holding its whole answer if it cannot stream)."""
    if _streams(child, False, kwargs):
        yield from child._stream(messages, stop=stop, run_manager=run_manager, **kwargs)
    else:
        yield _one_chunk(generate(child, messages, stop, run_manager, kwargs))


async def astream(
    child: BaseChatModel,
    messages: list[BaseMessage],
    stop: list[str] | None,
    run_manager: AsyncCallbackManagerForLLMRun | None,
    kwargs: Mapping[str, Any],
) -> AsyncIterator[ChatGenerationChunk]:
    """Async :func:`stream`; closing it closes the child's stream (``async for`` alone would not)."""
    if not _streams(child, True, kwargs):
        yield _one_chunk(await agenerate(child, messages, stop, run_manager, kwargs))
        return
    chunks = child._astream(messages, stop=stop, run_manager=run_manager, **kwargs)
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def has_output(chunk: ChatGenerationChunk) -> bool:
    """Whether a chunk is output: content or a tool-call piece (an empty role or usage-only chunk is not)."""
    message = chunk.message
    return bool(message.content) or bool(getattr(message, "tool_call_chunks", None))
