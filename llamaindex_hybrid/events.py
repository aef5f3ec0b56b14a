"""The routing event HybridLLM emits through LlamaIndex instrumentation (one per routed call)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.base import BaseEvent

from hybrid_router import Answered

dispatcher = get_dispatcher(__name__)


class HybridRouteEvent(BaseEvent):
    """One routed call, emitted once its answer is complete (for a stream: when it ends or is closed).

    ``metadata`` is the same dict as ``additional_kwargs["hybrid_router"]`` on the response; the other routing
    fields repeat it for handlers that filter on them. ``messages`` (chat calls) or ``prompt`` (completion calls)
    and ``response`` (the final response, or a stream's last chunk) let handlers count tokens. ``error`` (redacted)
    is set when a stream failed after its first output; ``response`` is then the last chunk before the failure.
    """

    route: str
    answered_by: str
    model: Optional[str] = None
    score: Optional[float] = None
    threshold: Optional[float] = None
    source: str
    fallback: bool = False
    fallback_reason: Optional[str] = None
    error: Optional[str] = None
    metadata: Dict[str, Any]
    messages: Optional[List[ChatMessage]] = None
    prompt: Optional[str] = None
    response: Any = None

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "HybridRouteEvent"


def emit_route_event(
    answered: Answered,
    response: Any,
    *,
    messages: List[ChatMessage] | None = None,
    prompt: str | None = None,
    error: str | None = None,
) -> None:
    """Emit a :class:`HybridRouteEvent` for one answered call (``error``: its stream failed midway)."""
    meta = answered.metadata()
    if error is not None:
        meta["error"] = error
    dispatcher.event(
        HybridRouteEvent(
            route=meta["route"],
            answered_by=meta["answered_by"],
            model=meta["model"],
            score=meta["score"],
            threshold=meta["threshold"],
            source=meta["threshold_source"],
            fallback=meta["fallback"],
            fallback_reason=meta["fallback_reason"],
            error=error,
            metadata=meta,
            messages=messages,
            prompt=prompt,
            response=response,
        )
    )
