"""The two models the LlamaIndex examples route between, and two that can call tools (the agent example).

small: the shipped SmolLM2-135M, in process (``llamaindex_hybrid.local.local_llm``).
large: OpenAI when ``OPENAI_API_KEY`` is set (``OPENAI_BASE_URL`` / ``OPENAI_MODEL`` override the endpoint and the
model, as for ``hybrid-llm serve``); otherwise a local OpenAI-compatible stand-in server on 127.0.0.1 serving the
shipped model (started in the background while the small model loads; it stops when the block ends).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from llama_index.core.base.llms.types import ChatMessage, LLMMetadata, MessageRole, ToolCallBlock  # noqa: E402
from llama_index.core.llms import LLM  # noqa: E402
from llama_index.core.llms.mock import MockFunctionCallingLLM  # noqa: E402
from scripted_tools import NO_CALL, OFFLINE, ONLINE, OPENAI_TOOL_MODELS, scripted_answer, scripted_tool_call  # noqa: E402

from hybrid_router.local.server import LocalOpenAIServer  # noqa: E402
from hybrid_router.serve.backends import DEFAULT_LARGE_MODEL, DEFAULT_LARGE_URL  # noqa: E402
from llamaindex_hybrid.local import local_llm  # noqa: E402

torch.set_num_threads(1)  # a 135M model gains little from more threads on a small CPU


@contextmanager
def example_models(max_tokens: int = 32, *, tools: bool = False) -> Iterator[tuple[LLM, LLM]]:
    """(small, large) LlamaIndex LLMs; ``tools`` marks the large client as function-calling."""
    from llama_index.llms.openai_like import OpenAILike

    api_key = os.environ.get("OPENAI_API_KEY")
    server = None if api_key else LocalOpenAIServer().start()
    try:
        small = local_llm(max_new_tokens=max_tokens)
        if server is not None:
            server.wait_ready()
            base_url, model, api_key = server.base_url, server.model_name, "not-needed"
        else:
            base_url = os.environ.get("OPENAI_BASE_URL", DEFAULT_LARGE_URL)
            model = os.environ.get("OPENAI_MODEL", DEFAULT_LARGE_MODEL)
        large = OpenAILike(
            model=model,
            api_base=base_url,
            api_key=api_key,
            max_tokens=max_tokens,
            temperature=0,
            is_chat_model=True,
            is_function_calling_model=tools,
            context_window=8192,
            timeout=120,
        )
        yield small, large
    finally:
        if server is not None:
            server.stop()


def _scripted_reply(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
    """The scripted tool call for the latest user question, or the answer once the tool ran (scripted_tools)."""
    if messages and messages[-1].role == MessageRole.TOOL:
        return ChatMessage(role=MessageRole.ASSISTANT, content=scripted_answer(messages[-1].content))
    question = next((str(m.content) for m in reversed(messages) if m.role == MessageRole.USER), "")
    call = scripted_tool_call(question, [t.metadata.name for t in kwargs.get("tools") or []])
    if call is None:
        return ChatMessage(role=MessageRole.ASSISTANT, content=NO_CALL)
    block = ToolCallBlock(tool_call_id=f"call_{len(messages)}", tool_name=call[0], tool_kwargs=call[1])
    return ChatMessage(role=MessageRole.ASSISTANT, blocks=[block])


class ScriptedToolCaller(MockFunctionCallingLLM):
    """An offline stand-in for a model that can call tools. Not a language model: it calls the tool whose name is
    in the question with the first two integers of the question, then states the tool's result. It exists so the
    tool path (route, tool call, tool result, answer) runs without a key."""

    name: str = "scripted"

    def __init__(self, name: str) -> None:
        super().__init__(response_generator=_scripted_reply, is_chat_model=True)
        self.name = name

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.name, is_function_calling_model=True, is_chat_model=True)


@contextmanager
def tool_calling_models() -> Iterator[tuple[LLM, LLM, str]]:
    """(small, large, what they are): two function-calling models.

    With ``OPENAI_API_KEY``: ``gpt-4o-mini`` and ``gpt-4o``. Offline there is no tool-capable model here (the
    shipped SmolLM2-135M cannot call tools), so two :class:`ScriptedToolCaller` stand-ins show the path.
    """
    if os.environ.get("OPENAI_API_KEY"):
        from llama_index.llms.openai import OpenAI

        small, large = (OpenAI(model=m, temperature=0, timeout=120) for m in OPENAI_TOOL_MODELS)
        yield small, large, ONLINE
    else:
        small, large = ScriptedToolCaller("scripted-small"), ScriptedToolCaller("scripted-large")
        yield small, large, OFFLINE
