"""Cost accounting for HybridLLM: an instrumentation event handler feeding the core ``CostTracker``.

Tokens are counted exactly as LlamaIndex's ``TokenCountingHandler`` counts them (the usage the provider reported,
else the tokenizer's estimate), so the two always agree.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator, List, Mapping, Optional

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks.schema import EventPayload
from llama_index.core.callbacks.token_counting import get_llm_token_counts
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.base import BaseEvent
from llama_index.core.utilities.token_counting import TokenCounter

from hybrid_router import CostTracker, PriceTable

from .events import HybridRouteEvent

#: The handlers of the :func:`track_costs` blocks active in this context (asyncio tasks and threads started with
#: a copy of the context inherit it), so concurrent blocks each count only their own calls.
_ACTIVE: ContextVar[tuple] = ContextVar("hybrid_track_costs", default=())


class HybridCostHandler(BaseEventHandler):
    """Totals calls, tokens, dollars and savings versus all-large for every :class:`HybridRouteEvent`.

    Register it on the root dispatcher (``get_dispatcher().add_event_handler(handler)``) or use
    :func:`track_costs`. ``prices`` maps model names (the children's ``metadata.model_name``) to dollars per
    million (input, output) tokens; ``tokenizer`` is the estimator used when a provider reports no usage.
    """

    prices: Optional[Any] = Field(default=None, exclude=True, description="PriceTable or {model: (in, out)}.")
    tokenizer: Optional[Callable[[str], List[Any]]] = Field(default=None, exclude=True)

    _tracker: CostTracker = PrivateAttr()
    _counter: TokenCounter = PrivateAttr()
    _scoped: bool = PrivateAttr(default=False)

    def __init__(self, prices: PriceTable | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(prices=prices, **kwargs)
        table = prices if isinstance(prices, PriceTable) else PriceTable(prices)
        self._tracker = CostTracker(table)
        self._counter = TokenCounter(tokenizer=self.tokenizer)

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "HybridCostHandler"

    @property
    def tracker(self) -> CostTracker:
        """The running totals (``calls``, ``total_cost``, ``savings``, ``per_model``, ``summary()``)."""
        return self._tracker

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        """Record a routing event; ignore every other event."""
        if not isinstance(event, HybridRouteEvent):
            return
        if self._scoped and not any(h is self for h in _ACTIVE.get()):
            return  # a call outside this handler's track_costs block
        if event.prompt is not None:
            payload = {EventPayload.PROMPT: event.prompt, EventPayload.COMPLETION: event.response}
        else:
            payload = {EventPayload.MESSAGES: event.messages or [], EventPayload.RESPONSE: event.response}
        counts = get_llm_token_counts(self._counter, payload)
        self._tracker.record(event.metadata, counts.prompt_token_count, counts.completion_token_count)

    def summary(self) -> str:
        """Human-readable totals."""
        return self._tracker.summary()


@contextmanager
def track_costs(
    prices: PriceTable | Mapping[str, Any] | None = None, *, tokenizer: Optional[Callable[[str], List[Any]]] = None
) -> Iterator[HybridCostHandler]:
    """Count the cost of every HybridLLM call made inside the block, and only those.

    The handler sits on the root dispatcher while the block runs, but counts only calls made in this block's
    context (tasks and threads it starts included): two concurrent blocks each count their own calls.
    """
    handler = HybridCostHandler(prices, tokenizer=tokenizer)
    handler._scoped = True
    root = get_dispatcher()
    root.add_event_handler(handler)
    token = _ACTIVE.set((*_ACTIVE.get(), handler))
    try:
        yield handler
    finally:
        _ACTIVE.reset(token)
        root.event_handlers = [h for h in root.event_handlers if h is not handler]
