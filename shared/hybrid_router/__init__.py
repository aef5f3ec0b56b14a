"""hybrid_router: the core of hybrid-llm — a quality-aware router between a small and a large LLM.

Implements *Hybrid LLM: Cost-Efficient and Quality-Aware Query Routing* (Ding et al., ICLR 2024): an encoder scores
P[q(small) >= q(large) - t] for each query; the small model answers iff the score reaches the quality threshold.
"""

from .calibration import Calibration
from .conversation import router_text
from .data_io import DataError, RoutingData, load_routing_data
from .fallback import AllModelsFailedError, Answered, FallbackRunner, ModelTimeoutError
from .options import RoutingOptions, current_routing, resolve_options, routing
from .pricing import CostTracker, ModelPrice, PriceTable
from .router import HybridRouter, RouteDecision, RouterFileError

__version__ = "0.1.0"

__all__ = [
    "AllModelsFailedError",
    "Answered",
    "Calibration",
    "CostTracker",
    "DataError",
    "FallbackRunner",
    "HybridRouter",
    "ModelPrice",
    "ModelTimeoutError",
    "PriceTable",
    "RouteDecision",
    "RouterFileError",
    "RoutingData",
    "RoutingOptions",
    "current_routing",
    "load_routing_data",
    "resolve_options",
    "router_text",
    "routing",
]
