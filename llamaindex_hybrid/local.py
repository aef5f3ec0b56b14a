"""A local transformers model (the shipped SmolLM2-135M by default) as a LlamaIndex LLM.

``llama_index.llms.huggingface.HuggingFaceLLM`` was tried first: it reports no token counts when streaming (its own
TODO), ignores per-call options, renders only role + content (tool calls and tool results are dropped) and cannot
call tools. :class:`LocalLLM` is a thin adapter over :class:`hybrid_router.local.chat.LocalChat` that reports exact
usage (``raw["usage"]`` and ``additional_kwargs``, the OpenAI LLM's convention, so ``TokenCountingHandler`` and the
hybrid cost handler read real counts) and calls tools when the model's chat template supports them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Iterator, Sequence

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from pydantic import ConfigDict, Field

from hybrid_router.local.chat import ChatOutput, LocalChat
from hybrid_router.local.models import DEFAULT_SMALL_MODEL

_DONE = object()


def _to_dict(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role.value, "content": message.content or ""}
    extra = message.additional_kwargs or {}
    for key in ("tool_calls", "tool_call_id", "name"):
        if extra.get(key):
            out[key] = extra[key]
    return out


def _openai_calls(output: ChatOutput) -> list[dict[str, Any]]:
    return [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
        for c in output.tool_calls
    ]


async def _aiter(iterator: Iterator[Any]) -> AsyncIterator[Any]:
    """Drain a blocking iterator from a worker thread, one item at a time."""
    while (item := await asyncio.to_thread(next, iterator, _DONE)) is not _DONE:
        yield item


class LocalLLM(FunctionCallingLLM):
    """LlamaIndex LLM over a local transformers model: chat/complete × sync/async × plain/stream, exact usage.

    Build it with :func:`local_llm`, or from a :class:`LocalChat` (``LocalLLM(chat=LocalChat(model, tokenizer))``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    chat_engine: LocalChat = Field(exclude=True, description="The generation engine (model + tokenizer).")
    max_new_tokens: int = Field(default=64, description="Default cap on generated tokens.")
    temperature: float = Field(default=0.0, description="0 = greedy decoding.")
    context_window: int = Field(default=8192, description="The model's context window.")

    @classmethod
    def class_name(cls) -> str:
        return "HybridLocalLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.max_new_tokens,
            model_name=self.chat_engine.name,
            is_chat_model=True,
            is_function_calling_model=self.chat_engine.supports_tools,
        )

    # ---------------------------------------------------------------- engine calls
    def _options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {
            "max_new_tokens": kwargs.get("max_tokens") or kwargs.get("max_new_tokens") or self.max_new_tokens,
            "temperature": kwargs.get("temperature", self.temperature),
            "stop": kwargs.get("stop"),
            "tools": kwargs.get("tools"),
        }

    @staticmethod
    def _response(output: ChatOutput, text: str, delta: str | None = None) -> ChatResponse:
        extra = {"tool_calls": _openai_calls(output)} if output.tool_calls else {}
        message = ChatMessage(role=MessageRole.ASSISTANT, content=text, additional_kwargs=extra)
        return ChatResponse(
            message=message,
            delta=delta,
            raw={"usage": output.usage(), "finish_reason": output.finish_reason},
            additional_kwargs=output.usage(),
        )

    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        output = self.chat_engine.generate([_to_dict(m) for m in messages], **self._options(kwargs))
        return self._response(output, output.text)

    def _stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        text = ""
        for item in self.chat_engine.stream([_to_dict(m) for m in messages], **self._options(kwargs)):
            if isinstance(item, ChatOutput):
                yield self._response(item, text, "")
            else:
                text += item
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=item)

    @staticmethod
    def _as_messages(prompt: str) -> list[ChatMessage]:
        return [ChatMessage(role=MessageRole.USER, content=prompt)]

    @staticmethod
    def _as_completion(response: ChatResponse) -> CompletionResponse:
        return CompletionResponse(
            text=response.message.content or "",
            delta=response.delta,
            raw=response.raw,
            additional_kwargs=response.additional_kwargs,
        )

    # ---------------------------------------------------------------- LlamaIndex API
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat(messages, **kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return self._stream_chat(messages, **kwargs)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._as_completion(self._chat(self._as_messages(prompt), **kwargs))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        return (self._as_completion(r) for r in self._stream_chat(self._as_messages(prompt), **kwargs))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await asyncio.to_thread(self._chat, messages, **kwargs)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        return _aiter(self._stream_chat(messages, **kwargs))

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._as_completion(await asyncio.to_thread(self._chat, self._as_messages(prompt), **kwargs))

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        async def gen() -> CompletionResponseAsyncGen:
            async for response in _aiter(self._stream_chat(self._as_messages(prompt), **kwargs)):
                yield self._as_completion(response)

        return gen()

    # ---------------------------------------------------------------- tools
    def _prepare_chat_with_tools(
        self,
        tools: Sequence[Any],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        messages = list(chat_history or [])
        if user_msg is not None:
            messages.append(
                user_msg if isinstance(user_msg, ChatMessage) else ChatMessage(role=MessageRole.USER, content=user_msg)
            )
        return {"messages": messages, "tools": [t.metadata.to_openai_tool() for t in tools], **kwargs}

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        calls = response.message.additional_kwargs.get("tool_calls") or []
        if not calls and error_on_no_tool_call:
            raise ValueError(
                f"expected a tool call from {self.chat_engine.name}, got text: {response.message.content!r}"
            )
        return [
            ToolSelection(
                tool_id=c["id"], tool_name=c["function"]["name"], tool_kwargs=json.loads(c["function"]["arguments"])
            )
            for c in calls
        ]


def local_llm(
    name: str = DEFAULT_SMALL_MODEL, *, max_new_tokens: int = 64, temperature: float = 0.0, **kwargs: Any
) -> LocalLLM:
    """A :class:`LocalLLM` for a shipped short name (``"smollm2-135m"``), a Hugging Face id or a local folder.

    The weights are loaded once per process and shared (see :func:`hybrid_router.local.models.load_small_model`).
    """
    return LocalLLM(chat_engine=LocalChat.load(name), max_new_tokens=max_new_tokens, temperature=temperature, **kwargs)
