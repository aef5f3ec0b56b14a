"""The two chat models the LangChain examples route between, and two that can call tools (the agent example).

small: the shipped SmolLM2-135M, in process (``langchain_hybrid.local_chat_model``).
large: OpenAI (``ChatOpenAI``) when ``OPENAI_API_KEY`` is set (``OPENAI_BASE_URL`` / ``OPENAI_MODEL`` override the
endpoint and the model); otherwise a local OpenAI-compatible stand-in server on 127.0.0.1 serving the shipped model
(started in the background while the small model loads; it stops when the block ends).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from langchain_core.language_models import BaseChatModel  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402
from langchain_core.runnables import Runnable  # noqa: E402
from langchain_core.utils.function_calling import convert_to_openai_tool  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402
from scripted_tools import NO_CALL, OFFLINE, ONLINE, OPENAI_TOOL_MODELS, scripted_answer, scripted_tool_call  # noqa: E402

from hybrid_router.local.server import LocalOpenAIServer  # noqa: E402
from hybrid_router.serve.backends import DEFAULT_LARGE_MODEL, DEFAULT_LARGE_URL  # noqa: E402
from langchain_hybrid import local_chat_model  # noqa: E402

torch.set_num_threads(1)  # a 135M model gains little from more threads on a small CPU


@contextmanager
def example_models(max_tokens: int = 32) -> Iterator[tuple[BaseChatModel, BaseChatModel]]:
    """(small, large) LangChain chat models, exactly what an app would pass to ``HybridChatModel``."""
    api_key = os.environ.get("OPENAI_API_KEY")
    server = None if api_key else LocalOpenAIServer().start()
    try:
        small = local_chat_model(max_new_tokens=max_tokens)
        if server is not None:
            server.wait_ready()
            base_url, model, api_key = server.base_url, server.model_name, "not-needed"
        else:
            base_url = os.environ.get("OPENAI_BASE_URL", DEFAULT_LARGE_URL)
            model = os.environ.get("OPENAI_MODEL", DEFAULT_LARGE_MODEL)
        large = ChatOpenAI(
            model=model,
            base_url=base_url,
            api_key=api_key,
            max_tokens=max_tokens,
            temperature=0,
            stream_usage=True,
            timeout=120,
        )
        yield small, large
    finally:
        if server is not None:
            server.stop()


class ScriptedToolCaller(BaseChatModel):
    """An offline stand-in for a model that can call tools. Not a language model: it calls the tool whose name is
    in the question with the first two integers of the question as ``a`` and ``b``, then states the tool's result.
    It exists so the tool path (route, bind tools per child, tool call, tool result, answer) runs without a key."""

    model_name: str

    @property
    def _llm_type(self) -> str:
        return "scripted-tool-caller"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable:
        """Bind tools as call kwargs, the way ``ChatOpenAI`` does (``HybridChatModel`` needs that)."""
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any):
        last = messages[-1]
        names = [t["function"]["name"] for t in kwargs.get("tools", [])]
        call = None if isinstance(last, ToolMessage) else scripted_tool_call(last.text, names)
        if isinstance(last, ToolMessage):
            message = AIMessage(content=scripted_answer(last.content))
        elif call is None:
            message = AIMessage(content=NO_CALL)
        else:
            message = AIMessage(
                content="", tool_calls=[{"name": call[0], "args": call[1], "id": f"call_{len(messages)}"}]
            )
        message.response_metadata = {"model_name": self.model_name}
        return ChatResult(generations=[ChatGeneration(message=message)])


@contextmanager
def tool_calling_models() -> Iterator[tuple[BaseChatModel, BaseChatModel, str]]:
    """(small, large, what they are): two models that can call tools.

    With ``OPENAI_API_KEY``: ``gpt-4o-mini`` and ``gpt-4o``. Offline there is no tool-capable model here (the
    shipped SmolLM2-135M cannot call tools), so two :class:`ScriptedToolCaller` stand-ins show the path.
    """
    if os.environ.get("OPENAI_API_KEY"):
        small, large = (ChatOpenAI(model=m, temperature=0, timeout=120) for m in OPENAI_TOOL_MODELS)
        yield small, large, ONLINE
    else:
        small, large = ScriptedToolCaller(model_name="scripted-small"), ScriptedToolCaller(model_name="scripted-large")
        yield small, large, OFFLINE
