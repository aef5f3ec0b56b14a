"""A local transformers model (the shipped SmolLM2-135M by default) as a LangChain chat model.

``ChatHuggingFace(llm=HuggingFacePipeline(...))`` was tried first and falls short for routing: it reports no
``usage_metadata`` (so no cost tracking), has no async path for pipelines (``ainvoke`` raises
NotImplementedError), rejects any conversation whose last message is not a HumanMessage (tool results) and never
parses tool calls. :class:`LocalChatModel` is a thin adapter over :class:`hybrid_router.local.chat.LocalChat`.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator, Sequence

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_openai_messages
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from hybrid_router.local.chat import ChatOutput, LocalChat
from hybrid_router.local.models import DEFAULT_SMALL_MODEL

PROVIDER = "huggingface"


def _usage(output: ChatOutput) -> dict[str, int]:
    return {
        "input_tokens": output.input_tokens,
        "output_tokens": output.output_tokens,
        "total_tokens": output.input_tokens + output.output_tokens,
    }


class LocalChatModel(BaseChatModel):
    """LangChain chat model over a local transformers model: invoke, stream, async (executor), exact token usage,
    and tool calls when the model's chat template supports tools.

    Build it with :func:`local_chat_model`, or from a :class:`LocalChat` (``LocalChatModel(chat=LocalChat(m, t))``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    chat: LocalChat = Field(exclude=True)
    """The generation engine (model + tokenizer)."""
    max_new_tokens: int = 64
    """Default cap on generated tokens (``max_tokens`` per call overrides it)."""
    temperature: float = 0.0
    """0 = greedy decoding."""

    @property
    def model_name(self) -> str:
        """The model's display name (reported as ``response_metadata["model_name"]``)."""
        return self.chat.name

    @property
    def _llm_type(self) -> str:
        return "hybrid-llm-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "max_new_tokens": self.max_new_tokens, "temperature": self.temperature}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider=PROVIDER,
            ls_model_name=self.model_name,
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
        )
        params["ls_max_tokens"] = kwargs.get("max_tokens", self.max_new_tokens)
        if stop:
            params["ls_stop"] = stop
        return params

    def _call_kwargs(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {
            "max_new_tokens": kwargs.get("max_tokens") or kwargs.get("max_new_tokens") or self.max_new_tokens,
            "temperature": kwargs.get("temperature", self.temperature),
            "stop": stop,
            "tools": kwargs.get("tools"),
        }

    def _metadata(self, output: ChatOutput) -> dict[str, Any]:
        return {"model_name": self.model_name, "finish_reason": output.finish_reason, "model_provider": PROVIDER}

    @staticmethod
    def _tool_calls(output: ChatOutput) -> list[dict[str, Any]]:
        return [
            {"name": c["name"], "args": c["arguments"], "id": c["id"], "type": "tool_call"} for c in output.tool_calls
        ]

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        output = self.chat.generate(convert_to_openai_messages(messages), **self._call_kwargs(stop, kwargs))
        message = AIMessage(
            content=output.text,
            tool_calls=self._tool_calls(output),
            usage_metadata=_usage(output),
            response_metadata=self._metadata(output),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for item in self.chat.stream(convert_to_openai_messages(messages), **self._call_kwargs(stop, kwargs)):
            if isinstance(item, ChatOutput):
                tool_chunks = [
                    {
                        "name": c["name"],
                        "args": json.dumps(c["arguments"]),
                        "id": c["id"],
                        "index": i,
                        "type": "tool_call_chunk",
                    }
                    for i, c in enumerate(item.tool_calls)
                ]
                chunk = ChatGenerationChunk(
                    message=AIMessageChunk(
                        content="",
                        tool_call_chunks=tool_chunks,
                        usage_metadata=_usage(item),
                        response_metadata=self._metadata(item),
                        chunk_position="last",
                    )
                )
            else:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=item))
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (OpenAI function schemas are handed to the chat template; see ``LocalChat.supports_tools``).

        ``tool_choice`` and provider options such as ``strict`` are accepted for compatibility; a local template
        cannot force a call, so they do not change the output.
        """
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)


def local_chat_model(
    name: str = DEFAULT_SMALL_MODEL, *, max_new_tokens: int = 64, temperature: float = 0.0, **kwargs: Any
) -> LocalChatModel:
    """A :class:`LocalChatModel` for a shipped short name (``"smollm2-135m"``), a Hugging Face id or a local folder.

    The weights are loaded once per process and shared (see :func:`hybrid_router.local.models.load_small_model`).
    """
    return LocalChatModel(chat=LocalChat.load(name), max_new_tokens=max_new_tokens, temperature=temperature, **kwargs)
