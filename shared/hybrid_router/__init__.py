"""hybrid_router: the core of hybrid-llm — a quality-aware router between a small and a large LLM.

Implements *Hybrid LLM: Cost-Efficient and Quality-Aware Query Routing* (Ding et al., ICLR 2024): an encoder scores
P[q(small) >= q(large) - t] for each query; the small model answers iff the score reaches the quality threshold.

Subpackages, one job each (lower layers never import higher ones; ``lint-imports`` checks it):

- :mod:`hybrid_router.core` — routing: options, conversation text, router, heads, encoder, fallback, pricing.
- :mod:`hybrid_router.train` — data, labels, recipes, training, evaluation, the shipped data.
- :mod:`hybrid_router.traffic` — the routing log, scoring logged answers, exports.
- :mod:`hybrid_router.local` — local models: loading, chat, a local OpenAI-compatible server, quantization,
  distillation.
- :mod:`hybrid_router.serve` — the OpenAI-compatible router endpoint and the demo.
- :mod:`hybrid_router.cli` — the ``hybrid-llm`` console script.

The names below load on first use, so ``import hybrid_router`` imports no torch, transformers or onnxruntime.
"""

from . import _compat
from ._lazy import lazy_exports

__version__ = "0.2.0"

_EXPORTS = {
    **dict.fromkeys(("AllModelsFailedError", "FallbackRunner", "ModelTimeoutError"), ".core.fallback"),
    "Answered": ".core.answered",
    **dict.fromkeys(("RoutingOptions", "current_routing", "resolve_options", "routing"), ".core.options"),
    **dict.fromkeys(("CostTracker", "ModelPrice", "PriceTable"), ".core.pricing"),
    **dict.fromkeys(("HybridRouter", "RouterFileError"), ".core.router"),
    **dict.fromkeys(("add_route_record", "record_routes"), ".core.records"),
    "Calibration": ".core.calibration",
    "Encoder": ".core.encoder",
    "RouteDecision": ".core.decision",
    "router_text": ".core.conversation",
    **dict.fromkeys(("DataError", "RoutingData", "load_routing_data"), ".train.data_io"),
    "train_router": ".train.training",
    "RoutingLog": ".traffic.routing_log",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
_compat.install()
