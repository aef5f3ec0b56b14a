"""llamaindex_hybrid: Hybrid LLM routing for LlamaIndex (``HybridLLM``, routing events, cost tracking)."""

from .cost import HybridCostHandler, track_costs
from .events import HybridRouteEvent
from .llm import HybridLLM

__all__ = ["HybridCostHandler", "HybridLLM", "HybridRouteEvent", "track_costs"]
