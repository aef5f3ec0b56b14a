"""What the cascade needs from LlamaIndex responses: the answer's text, its structural problems, and its tokens.

A small answer whose tool call does not parse, or that is not valid JSON where JSON was asked for, is escalated
whatever the verifier's score (see :mod:`hybrid_router.core.cascade_runner`). Streamed LlamaIndex responses
carry the text so far on every chunk, so the last chunk is the whole answer.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence, Union

from llama_index.core.base.llms.types import ChatResponse, CompletionResponse, ToolCallBlock

from hybrid_router import HybridRouter, RouteDecision
from hybrid_router.core.cascade_runner import (
    Usage,
    Verdict,
    asks_for_json,
    json_problem,
    judge,
    tool_arguments_problem,
)

Response = Union[ChatResponse, CompletionResponse]


def expects_json(call_kwargs: Mapping[str, Any]) -> bool:
    """Whether the call asked for JSON (an OpenAI-style ``response_format``)."""
    return asks_for_json(call_kwargs.get("response_format"))


def text_of(response: Response) -> str:
    """The answer's text (a chat message's content, or a completion's text)."""
    if isinstance(response, ChatResponse):
        return response.message.content or ""
    return response.text or ""


def _raw_arguments(response: ChatResponse) -> Iterable[Any]:
    """Every tool call's arguments as the model sent them (OpenAI ``tool_calls`` or LlamaIndex tool-call blocks)."""
    for call in response.message.additional_kwargs.get("tool_calls") or []:
        function = getattr(call, "function", None) or (call.get("function") if isinstance(call, dict) else None)
        yield getattr(function, "arguments", None) if not isinstance(function, dict) else function.get("arguments")
    for block in response.message.blocks:
        if isinstance(block, ToolCallBlock):
            yield block.tool_kwargs


def problem(response: Response, wants_json: bool) -> str | None:
    """A structural reason to escalate: a tool call that did not parse, or JSON that is not valid."""
    if isinstance(response, ChatResponse):
        arguments = list(_raw_arguments(response))
        if arguments:
            return tool_arguments_problem(arguments)
    return json_problem(text_of(response)) if wants_json else None


def verdict(
    router: HybridRouter, decision: RouteDecision, query: Union[str, Sequence[Any]], answer: Response, wants_json: bool
) -> Verdict:
    """The verifier's verdict on the small model's ``answer`` to ``query`` (a prompt or a message list)."""
    found = problem(answer, wants_json)
    score = None if found else router.score_answer(query, text_of(answer))
    return judge(score, decision.verify_threshold, found)


def usage_of(response: Response) -> Usage:
    """The response's token counts, when the model reported them (OpenAI-style ``raw.usage`` or kwargs)."""
    extra = response.additional_kwargs
    if "prompt_tokens" in extra and "completion_tokens" in extra:
        return {"input_tokens": int(extra["prompt_tokens"]), "output_tokens": int(extra["completion_tokens"])}
    raw = response.raw
    usage = raw.get("usage") if isinstance(raw, dict) else getattr(raw, "usage", None)
    if usage is None:
        return None
    get = usage.get if isinstance(usage, dict) else lambda k: getattr(usage, k, None)
    if get("prompt_tokens") is None:
        return None
    return {"input_tokens": int(get("prompt_tokens")), "output_tokens": int(get("completion_tokens") or 0)}
