"""LangChain integration of hybrid-llm: ``HybridChatModel`` routes each call to a small or a large chat model."""

from .chat_model import HybridChatModel
from .cost import HybridCostCallbackHandler, get_hybrid_cost_callback
from .decisions import HybridDecisionModel
from .local import LocalChatModel, local_chat_model

__all__ = [
    "HybridChatModel",
    "HybridCostCallbackHandler",
    "HybridDecisionModel",
    "LocalChatModel",
    "get_hybrid_cost_callback",
    "local_chat_model",
]
