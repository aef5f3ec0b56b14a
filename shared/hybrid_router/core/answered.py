"""Who answered one call, and the routing record every response carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .decision import RouteDecision

#: ``fallback_reason`` when the chosen model was skipped because it is cooling down (only the other one ran).
COOLDOWN_REASON = "cooldown"


@dataclass(frozen=True)
class Answered:
    """Who answered one call: the router's decision, the model that answered, and whether that was a fallback.

    In a cascade, ``verifier_score`` is the verifier's score of the small model's answer, and ``escalation_reason``
    says why that answer was not returned (a low verifier score, a tool call or JSON that did not parse); an
    escalated call ran both models and is answered by the large one.
    """

    decision: RouteDecision
    answered_by: str
    fallback_reason: str | None = None
    model_names: tuple[str | None, str | None] = (None, None)
    verifier_score: float | None = None
    escalation_reason: str | None = None
    #: the rejected small call's token counts on an escalation (``input_tokens``, ``output_tokens``), when known
    small_usage: Mapping[str, int] | None = None
    #: ``"route"`` (the decision was acted on) or ``"observe"`` (the large model answered whatever the decision)
    mode: str = "route"

    @property
    def escalated(self) -> bool:
        """True when a cascade rejected the small model's answer and the large model answered."""
        return self.escalation_reason is not None

    @property
    def models_called(self) -> tuple[str, ...]:
        """The models that ran for this call (both for an escalation or a fallback)."""
        if self.escalated or (self.fallback and self.fallback_reason != COOLDOWN_REASON):
            return ("small", "large")
        return (self.answered_by,)

    @property
    def fallback(self) -> bool:
        """True when the other model answered because the chosen one failed."""
        return self.fallback_reason is not None

    @property
    def other(self) -> str:
        """The model that did not answer (the one a shadow call asks)."""
        return "large" if self.answered_by == "small" else "small"

    @property
    def model_name(self) -> str | None:
        """The name of the model that answered."""
        return self.model_names[0] if self.answered_by == "small" else self.model_names[1]

    def metadata(self) -> dict[str, Any]:
        """The routing record attached to responses (JSON-able)."""
        return {
            "route": self.decision.target,
            "answered_by": self.answered_by,
            "model": self.model_name,
            "small_model": self.model_names[0],
            "large_model": self.model_names[1],
            "score": self.decision.score,
            "threshold": self.decision.threshold,
            "threshold_source": self.decision.threshold_source,
            "fallback": self.fallback,
            "fallback_reason": self.fallback_reason,
            "strategy": self.decision.strategy,
            "verify_threshold": self.decision.verify_threshold,
            "verifier_score": self.verifier_score,
            "escalated": self.escalated,
            "escalation_reason": self.escalation_reason,
            "small_usage": dict(self.small_usage) if self.small_usage else None,
            "mode": self.mode,
            "router_input": self.decision.router_input,
        }
