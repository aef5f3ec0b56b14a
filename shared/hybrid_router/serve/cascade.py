"""What the cascade needs from OpenAI chat-completion dicts: the answer's text, its structural problems, its tokens.

A small answer whose tool call arguments do not parse, or that is not valid JSON where the request's
``response_format`` asked for JSON, is escalated whatever the verifier's score.
"""

from __future__ import annotations

from typing import Any

from ..core.cascade_runner import Usage, Verdict, asks_for_json, json_problem, judge, tool_arguments_problem
from ..core.decision import RouteDecision
from ..core.router import HybridRouter


def expects_json(body: dict[str, Any]) -> bool:
    return asks_for_json(body.get("response_format"))


def completion_answer(completion: dict[str, Any]) -> tuple[str, list[Any]]:
    """(text, tool-call argument strings) of a ``chat.completion``'s first choice."""
    message = (completion.get("choices") or [{}])[0].get("message") or {}
    calls = message.get("tool_calls") or []
    return message.get("content") or "", [(c.get("function") or {}).get("arguments") for c in calls]


def stream_answer(chunks: list[dict[str, Any]]) -> tuple[str, list[Any]]:
    """(text, tool-call argument strings) assembled from ``chat.completion.chunk`` deltas."""
    text, arguments = [], {}
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text.append(delta.get("content") or "")
            for call in delta.get("tool_calls") or ():
                index = call.get("index", 0)
                arguments[index] = arguments.get(index, "") + ((call.get("function") or {}).get("arguments") or "")
    return "".join(text), list(arguments.values())


def verdict(
    router: HybridRouter, decision: RouteDecision, body: dict[str, Any], text: str, arguments: list[Any]
) -> Verdict:
    """The verifier's verdict on the small model's answer to the request ``body``."""
    found = tool_arguments_problem(arguments) if arguments else None
    if found is None and not arguments and expects_json(body):
        found = json_problem(text)
    score = None if found else router.score_answer(body["messages"], text)
    return judge(score, decision.verify_threshold, found)


def usage_of(completion_or_chunks: dict[str, Any] | list[dict[str, Any]]) -> Usage:
    """The ``usage`` an answer reported (a completion's, or the last chunk that has one)."""
    items = completion_or_chunks if isinstance(completion_or_chunks, list) else [completion_or_chunks]
    usage = next((c["usage"] for c in reversed(items) if isinstance(c.get("usage"), dict)), None)
    if not usage:
        return None
    return {"input_tokens": int(usage.get("prompt_tokens", 0)), "output_tokens": int(usage.get("completion_tokens", 0))}
