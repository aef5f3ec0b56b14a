"""A small tool-capable scripted chat model for plumbing tests of ``HybridChatModel``.

It behaves like a provider integration: ``bind_tools`` formats tools in its own format (``"openai"`` or
``"anthropic"`` style) and the model rejects tools in the other format, rejects unknown call kwargs (so a
wrapper's private kwargs leaking into a child fail loudly), reports usage, puts its ``model_name`` on the last
streamed chunk (as langchain-openai does), and can be told to fail, hang, or break mid-stream.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any, AsyncIterator, Iterator, Literal, Sequence

import pytest
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field

#: Marks tests that must not open any TCP connection (pytest-socket; the event loop's own socketpair stays allowed).
NO_NETWORK = pytest.mark.allow_hosts([])

ALLOWED_KWARGS = {
    "tools",
    "tool_choice",
    "temperature",
    "max_tokens",
    "strict",
    "parallel_tool_calls",
    "stream",
    "response_format",
}


class ScriptedChatModel(BaseChatModel):
    """Answers ``reply`` (``{model}`` is replaced by its name), or calls a bound tool with args from the prompt."""

    model_name: str = "scripted"
    reply: str = "Hello! This is {model} answering."
    tool_format: Literal["openai", "anthropic"] = "openai"
    json_reply: str = '{"answer": "{model}"}'
    """The answer in JSON mode (``response_format={"type": "json_object"}``; ``{model}`` is replaced)."""
    error: str | None = None
    """Raise ``RuntimeError(error)`` before any output."""
    delay: float = 0.0
    """Seconds to wait before the first output (sync: sleep; async: asyncio.sleep)."""
    fail_after_chunks: int | None = None
    """Raise after streaming this many chunks."""
    reported_model: str | None = None
    """The ``model_name`` the answers report (an API reports its dated model id); default ``model_name``; ``""``:
    report none."""
    calls: list[dict[str, Any]] = Field(default_factory=list, exclude=True)
    """One record per call: ``{"messages", "kwargs", "stop"}``."""

    @property
    def _llm_type(self) -> str:
        return "scripted-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "tool_format": self.tool_format}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="scripted", ls_model_name=kwargs.get("model", self.model_name), ls_model_type="chat"
        )
        if stop:
            params["ls_stop"] = stop
        return params

    # ------------------------------------------------------------------ tools, in this model's own format
    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Runnable:
        specs = [convert_to_openai_tool(t) for t in tools]
        if self.tool_format == "openai":
            formatted: list[dict[str, Any]] = specs
            if tool_choice in ("any", "required", True):
                tool_choice = "required"
            elif isinstance(tool_choice, str) and tool_choice not in ("auto", "none"):
                tool_choice = {"type": "function", "function": {"name": tool_choice}}
        else:
            formatted = [
                {
                    "name": s["function"]["name"],
                    "description": s["function"].get("description", ""),
                    "input_schema": s["function"].get("parameters", {}),
                }
                for s in specs
            ]
            if tool_choice in ("any", "required", True):
                tool_choice = {"type": "any"}
            elif isinstance(tool_choice, str) and tool_choice not in ("auto", "none"):
                tool_choice = {"type": "tool", "name": tool_choice}
            elif tool_choice == "auto":
                tool_choice = {"type": "auto"}
        extra = {"tool_choice": tool_choice} if tool_choice is not None else {}
        return self.bind(tools=formatted, **extra, **kwargs)

    def with_structured_output(
        self,
        schema: Any = None,
        *,
        method: str = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable:
        """Like ``ChatOpenAI`` for the OpenAI format (``json_schema``/``json_mode``: ``response_format``); the
        Anthropic format always forces a tool call (as Anthropic's API had no JSON mode)."""
        if method == "function_calling" or self.tool_format == "anthropic":
            return super().with_structured_output(schema, include_raw=include_raw, **kwargs)
        if method == "json_mode":
            response_format: dict[str, Any] = {"type": "json_object"}
        else:
            function = convert_to_openai_tool(schema)["function"]
            response_format = {
                "type": "json_schema",
                "json_schema": {"name": function["name"], "schema": function.get("parameters", {}), "strict": strict},
            }
        llm = self.bind(
            response_format=response_format,
            ls_structured_output_format={"kwargs": {"method": method, "strict": strict}, "schema": schema},
            **kwargs,
        )
        is_model = isinstance(schema, type) and issubclass(schema, BaseModel)
        parser = PydanticOutputParser(pydantic_object=schema) if is_model else JsonOutputParser()
        if include_raw:
            raise NotImplementedError("the scripted model's own include_raw is not needed by the tests")
        return llm | parser

    def _read_tools(self, tools: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for tool in tools:
            if self.tool_format == "openai":
                if tool.get("type") != "function":
                    raise ValueError(f"{self.model_name}: expected OpenAI-format tools, got {tool}")
                out.append((tool["function"]["name"], tool["function"].get("parameters", {})))
            else:
                if "input_schema" not in tool:
                    raise ValueError(f"{self.model_name}: expected Anthropic-format tools, got {tool}")
                out.append((tool["name"], tool["input_schema"]))
        return out

    def _forced_tool(self, tool_choice: Any) -> str | bool:
        """A tool name, True for "any tool", False for no forcing."""
        if tool_choice in ("required",) or tool_choice == {"type": "any"}:
            return True
        if isinstance(tool_choice, dict):
            return tool_choice.get("name") or tool_choice.get("function", {}).get("name") or False
        return False

    # ------------------------------------------------------------------ the script
    def _answer(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> AIMessage:
        unknown = set(kwargs) - ALLOWED_KWARGS
        if unknown:
            raise TypeError(f"{self.model_name}: unexpected call kwargs {sorted(unknown)}")
        self.calls.append({"messages": messages, "kwargs": dict(kwargs), "stop": stop})
        if self.error:
            raise RuntimeError(self.error)
        response_format = kwargs.get("response_format")
        if response_format:
            if response_format["type"] == "json_object":
                text = self.json_reply.replace("{model}", self.model_name)
            else:
                text = json.dumps(_fill_args(response_format["json_schema"]["schema"], _last_human_text(messages)))
            return AIMessage(
                content=text, usage_metadata=_usage(sum(len(str(m.content).split()) + 1 for m in messages), 5)
            )
        tools = self._read_tools(kwargs.get("tools") or [])
        forced = self._forced_tool(kwargs.get("tool_choice"))
        last = messages[-1] if messages else None
        usage_in = sum(len(str(m.content).split()) + 1 for m in messages)
        if tools and (forced or isinstance(last, HumanMessage)):
            name, schema = self._pick_tool(tools, forced, messages)
            args = _fill_args(schema, _last_human_text(messages))
            call_id = f"call_{len(self.calls)}_{name}"
            return AIMessage(
                content="",
                tool_calls=[{"name": name, "args": args, "id": call_id, "type": "tool_call"}],
                usage_metadata=_usage(usage_in, 5),
            )
        if isinstance(last, ToolMessage):
            text = f"The tool said: {last.content}"
        else:
            text = self.reply.format(model=self.model_name)
        for word in stop or []:
            if word and word in text:
                text = text[: text.index(word)] or "."
        return AIMessage(content=text, usage_metadata=_usage(usage_in, len(text.split())))

    def _pick_tool(
        self, tools: list[tuple[str, dict]], forced: str | bool, messages: list[BaseMessage]
    ) -> tuple[str, dict]:
        if isinstance(forced, str):
            return next(t for t in tools if t[0] == forced)
        called = {c["name"] for m in messages if isinstance(m, AIMessage) for c in m.tool_calls}
        text = _last_human_text(messages)
        mentioned = [t for t in tools if t[0] in text and t[0] not in called]
        fresh = [t for t in tools if t[0] not in called]
        return (mentioned or fresh or tools)[0]

    def _wait_sync(self) -> None:
        if self.delay:
            time.sleep(self.delay)

    async def _wait_async(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)

    def _chunks(self, message: AIMessage) -> Iterator[ChatGenerationChunk]:
        if message.tool_calls:
            call = message.tool_calls[0]
            parts = [
                AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        {"name": call["name"], "args": json.dumps(call["args"]), "id": call["id"], "index": 0}
                    ],
                )
            ]
        else:
            words = re.findall(r"\S+\s*", str(message.content)) or [""]
            parts = [AIMessageChunk(content=w) for w in words]
        parts.append(
            AIMessageChunk(
                content="",
                usage_metadata=message.usage_metadata,
                chunk_position="last",
                response_metadata=self._reported({"finish_reason": "stop"}),
            )
        )
        for index, part in enumerate(parts):
            if self.fail_after_chunks is not None and index >= self.fail_after_chunks:
                raise RuntimeError(f"{self.model_name} broke after {index} chunks")
            yield ChatGenerationChunk(message=part)

    def _reported(self, metadata: dict[str, Any]) -> dict[str, Any]:
        name = self.model_name if self.reported_model is None else self.reported_model
        return {"model_name": name, **metadata} if name else metadata

    def _result(self, message: AIMessage) -> ChatResult:
        message.response_metadata = self._reported({"finish_reason": "stop"})
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output=self._reported({}))

    # ------------------------------------------------------------------ BaseChatModel hooks
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._wait_sync()
        return self._result(self._answer(messages, stop, kwargs))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        await self._wait_async()
        return self._result(self._answer(messages, stop, kwargs))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        self._wait_sync()
        yield from self._chunks(self._answer(messages, stop, kwargs))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        await self._wait_async()
        for chunk in self._chunks(self._answer(messages, stop, kwargs)):
            yield chunk


def _usage(inp: int, out: int) -> dict[str, int]:
    return {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out}


def _last_human_text(messages: list[BaseMessage]) -> str:
    return next((str(m.content) for m in reversed(messages) if isinstance(m, HumanMessage)), "")


def _fill_args(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """Arguments for a tool: numbers and quoted strings from the prompt, in order; short placeholders otherwise."""
    numbers = [int(n) for n in re.findall(r"-?\d+", text)]
    quoted = [a or b for a, b in re.findall(r"'([^']+)'|\"([^\"]+)\"", text)]
    args: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        kinds = {prop.get("type")} | {p.get("type") for p in prop.get("anyOf", [])}
        if "integer" in kinds or "number" in kinds:
            args[name] = numbers.pop(0) if numbers else 1
        elif "boolean" in kinds:
            args[name] = True
        elif "array" in kinds:
            args[name] = []
        elif "object" in kinds:
            args[name] = {}
        else:
            args[name] = quoted.pop(0) if quoted else f"a {name.replace('_', ' ')}"
    return args
