"""Cost tracking for routed calls: a LangChain callback handler over the core :class:`~hybrid_router.CostTracker`.

The handler reads what every routed answer carries — ``response_metadata["hybrid_router"]`` and the message's
``usage_metadata`` — in ``on_llm_end``, which LangChain calls with the full (merged) message after ``invoke`` and
after a stream alike. Calls of other models (no ``hybrid_router`` metadata) are ignored.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator, Mapping

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult
from langchain_core.tracers.context import register_configure_hook

from hybrid_router import CostTracker, PriceTable

from .labels import METADATA_KEY


class HybridCostCallbackHandler(BaseCallbackHandler):
    """Totals calls, tokens and dollars per model, and the savings versus sending every call to the large model.

    ``prices`` maps model names (each child's configured name: ``model`` in ``response_metadata["hybrid_router"]``)
    to dollars per million tokens: ``{"gpt-4o": (2.5, 10.0), "gpt-4o-mini": {"input": 0.15, "output": 0.6}}``.
    Use it like any callback (``config={"callbacks": [handler]}``) or through :func:`get_hybrid_cost_callback`.
    """

    def __init__(self, prices: Mapping[str, Any] | PriceTable | None = None, *, tracker: CostTracker | None = None):
        super().__init__()
        if tracker is not None and prices is not None:
            raise ValueError("give prices or a tracker, not both")
        self.tracker = tracker or CostTracker(prices)

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        """Record every routed message of a finished call."""
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                routed = getattr(message, "response_metadata", {}).get(METADATA_KEY) if message else None
                if not routed:
                    continue
                usage = getattr(message, "usage_metadata", None) or {}
                self.tracker.record(routed, usage.get("input_tokens", 0), usage.get("output_tokens", 0))

    @property
    def total_cost(self) -> float:
        """Dollars spent."""
        return self.tracker.total_cost

    @property
    def savings(self) -> float:
        """Dollars saved versus sending every call to the large model."""
        return self.tracker.savings

    def summary(self) -> str:
        """A human-readable report (per model: calls, tokens, dollars; then the total and the savings)."""
        return self.tracker.summary()

    def __repr__(self) -> str:
        return self.summary()


_current: ContextVar[HybridCostCallbackHandler | None] = ContextVar("hybrid_cost_callback", default=None)
register_configure_hook(_current, inheritable=True)


@contextmanager
def get_hybrid_cost_callback(
    prices: Mapping[str, Any] | PriceTable | None = None,
) -> Iterator[HybridCostCallbackHandler]:
    """Track the cost of every routed call inside the block (like ``get_openai_callback``)::

    with get_hybrid_cost_callback(prices={"gpt-4o": (2.5, 10), "smollm2-135m": (0, 0)}) as cost:
        chain.invoke(...)
    print(cost.summary())
    """
    handler = HybridCostCallbackHandler(prices)
    token = _current.set(handler)
    try:
        yield handler
    finally:
        _current.reset(token)
