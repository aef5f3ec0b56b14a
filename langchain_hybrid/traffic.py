"""Write answered calls to a :class:`hybrid_router.traffic.routing_log.RoutingLog`, with optional shadow answers.

The log does the work off the request path; this adapter only pulls the text and token counts out of LangChain
messages and gives the log a way to ask the model that did not answer (for shadow pairs). Shadow calls run in the
log's background threads, outside the user's callback context, so they never show up in the user's callbacks or
cost totals.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from hybrid_router import Answered
from hybrid_router.traffic.routing_log import RoutingLog


def _text_and_usage(message: BaseMessage) -> tuple[str, int | None, int | None]:
    usage = getattr(message, "usage_metadata", None) or {}
    return message.text, usage.get("input_tokens"), usage.get("output_tokens")


def add_chunks(chunks: list[BaseMessage]) -> BaseMessage:
    """One message from a stream's chunks (``AIMessageChunk`` addition)."""
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    return merged


def log_answer(
    log: RoutingLog,
    messages: list[BaseMessage],
    answer: BaseMessage,
    answered: Answered,
    started: float,
    other_model: Callable[[str], tuple[BaseChatModel, dict[str, Any]]],
    *,
    error: str | None = None,
) -> None:
    """Queue one answered call; maybe ask the other model too (``other_model(target)`` -> (child, call kwargs)).

    ``error`` (already redacted) marks a call whose stream failed after output: its partial answer is logged
    with the error, never as a normal answer.
    """
    text, n_in, n_out = _text_and_usage(answer)
    call_id = log.log_call(
        messages,
        answered,
        text,
        input_tokens=n_in,
        output_tokens=n_out,
        latency_s=time.perf_counter() - started,
        source="langchain",
        **({"error": error} if error is not None else {}),
    )

    def run_other() -> tuple[str, int | None, int | None]:
        child, kwargs = other_model(answered.other)
        return _text_and_usage(child.invoke(messages, **kwargs))

    log.maybe_shadow(call_id, messages, answered, run_other)
