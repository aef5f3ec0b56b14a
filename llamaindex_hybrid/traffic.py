"""Write answered HybridLLM calls to a :class:`~hybrid_router.traffic.routing_log.RoutingLog`, with shadow answers.

Tokens are counted as LlamaIndex's ``TokenCountingHandler`` counts them (provider usage, else the tokenizer's
estimate). Shadow answers (the model that did not answer, asked in the log's background threads) use the plain
``chat``/``complete`` of that child, outside the user's instrumentation context.
"""

from __future__ import annotations

import time
from typing import Any, Callable, List, Optional

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.callbacks.schema import EventPayload
from llama_index.core.callbacks.token_counting import get_llm_token_counts
from llama_index.core.llms.llm import LLM
from llama_index.core.utilities.token_counting import TokenCounter

from hybrid_router import Answered
from hybrid_router.traffic.routing_log import RoutingLog


def _text_and_tokens(
    response: Any, messages: Optional[List[ChatMessage]], prompt: Optional[str]
) -> tuple[str, int, int]:
    if prompt is not None:
        payload = {EventPayload.PROMPT: prompt, EventPayload.COMPLETION: response}
        text = response.text
    else:
        payload = {EventPayload.MESSAGES: messages or [], EventPayload.RESPONSE: response}
        text = response.message.content or ""
    # A counter per call: it takes LlamaIndex's tokenizer now, so a later ``Settings.tokenizer`` is honoured.
    counts = get_llm_token_counts(TokenCounter(), payload)
    return text, counts.prompt_token_count, counts.completion_token_count


def log_answer(
    log: RoutingLog,
    answered: Answered,
    response: Any,
    started: float,
    child: Callable[[str], LLM],
    *,
    messages: Optional[List[ChatMessage]] = None,
    prompt: Optional[str] = None,
    error: Optional[str] = None,
) -> None:
    """Queue one answered call; maybe ask the other child too (``child(target)`` returns that LLM).

    ``error`` (already redacted) marks a stream that failed after output: its partial answer is logged with it.
    """
    text, n_in, n_out = _text_and_tokens(response, messages, prompt)
    conversation = prompt if prompt is not None else messages
    call_id = log.log_call(
        conversation,
        answered,
        text,
        input_tokens=n_in,
        output_tokens=n_out,
        latency_s=time.perf_counter() - started,
        source="llamaindex",
        **({"error": error} if error is not None else {}),
    )
    other = child(answered.other)

    def run_other() -> tuple[str, int, int]:
        reply = other.complete(prompt) if prompt is not None else other.chat(messages or [])
        return _text_and_tokens(reply, messages, prompt)

    log.maybe_shadow(call_id, conversation, answered, run_other)
