"""What the cascade needs from LangChain messages: the answer's text, its structural problems, and its tokens.

A small answer whose tool call does not parse, or that is not valid JSON where JSON was asked for, is escalated
whatever the verifier's score (see :mod:`hybrid_router.core.cascade_runner`).
"""

from __future__ import annotations

from typing import Any, Mapping

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult

from hybrid_router import HybridRouter, RouteDecision
from hybrid_router.core.cascade_runner import (
    Usage,
    Verdict,
    asks_for_json,
    json_problem,
    judge,
    tool_arguments_problem,
)

from .traffic import add_chunks


def expects_json(call_kwargs: Mapping[str, Any], bindings: Mapping[str, Any] | None) -> bool:
    """Whether the call asked the small model for JSON (``response_format``, as bound by structured output)."""
    formats = [call_kwargs.get("response_format"), (bindings or {}).get("small", {}).get("response_format")]
    return any(asks_for_json(f) for f in formats)


def problem(message: BaseMessage, wants_json: bool) -> str | None:
    """A structural reason to escalate: a tool call that did not parse, or JSON that is not valid."""
    if getattr(message, "invalid_tool_calls", None):
        return "a tool call's arguments did not parse"
    chunks = getattr(message, "tool_call_chunks", None)
    if chunks:  # a merged stream: check the raw argument strings (LangChain's own parse is lenient)
        found = tool_arguments_problem(chunk.get("args") for chunk in chunks)
        if found:
            return found
    if wants_json and not getattr(message, "tool_calls", None):
        return json_problem(message.text)
    return None


def verdict(
    router: HybridRouter, decision: RouteDecision, messages: list[BaseMessage], answer: BaseMessage, wants_json: bool
) -> Verdict:
    """The verifier's verdict on the small model's ``answer`` to ``messages``."""
    found = problem(answer, wants_json)
    score = None if found else router.score_answer(messages, answer.text)
    return judge(score, decision.verify_threshold, found)


def result_message(result: ChatResult) -> BaseMessage:
    return result.generations[0].message


def stream_message(chunks: list[ChatGenerationChunk]) -> BaseMessage:
    return add_chunks([chunk.message for chunk in chunks])


def usage_of(message: BaseMessage) -> Usage:
    """A message's token counts (``usage_metadata``), when the model reported them."""
    usage = getattr(message, "usage_metadata", None)
    if not usage:
        return None
    return {"input_tokens": int(usage.get("input_tokens", 0)), "output_tokens": int(usage.get("output_tokens", 0))}
