"""llamaindex_hybrid: Hybrid LLM routing for LlamaIndex (``HybridLLM``, routing events, cost tracking)."""

from hybrid_router.core.records import record_routes

from .cost import HybridCostHandler, track_costs
from .events import HybridRouteEvent
from .llm import HybridLLM
from .local import LocalLLM, local_llm

__all__ = [
    "HybridCostHandler",
    "HybridLLM",
    "HybridRouteEvent",
    "LocalLLM",
    "local_llm",
    "record_routes",
    "track_costs",
]
