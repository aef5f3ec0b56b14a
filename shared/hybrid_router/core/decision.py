"""The routing decision: where one query goes and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RouteDecision:
    """Where one query goes and why.

    ``score`` is None when the route was forced; ``threshold_source`` names the layer and key that decided, e.g.
    ``"metadata:quality_threshold"``, ``"context:large_share"``, ``"default:quality_threshold"``, ``"kwarg:route"``.
    ``requested`` is the value that was asked for (a threshold, a share, a drop, or the forced route).

    ``strategy`` is ``"route"`` (the chosen model answers) or ``"cascade"``: then ``target == "small"`` means the
    small model answers first and its answer is accepted iff the verifier's score reaches ``verify_threshold``
    (else the large model answers too); ``"large"`` means the query was sent to the large model at once.

    ``router_input`` says what the score was computed on: ``"conversation"``, ``"last_user"``,
    ``"callable:<name>"`` (a caller's function), or ``"engine_query"`` (a LlamaIndex query engine's query string).
    """

    target: str
    score: float | None
    threshold: float | None
    threshold_source: str
    requested: float | str | None = None
    strategy: str = "route"
    verify_threshold: float | None = None
    router_input: str = "conversation"

    @property
    def verifies(self) -> bool:
        """True when the small model's answer must pass the verifier (a cascade's small route)."""
        return self.strategy == "cascade" and self.target == "small" and self.verify_threshold is not None

    @property
    def other(self) -> str:
        """The model not chosen."""
        return "large" if self.target == "small" else "small"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-able)."""
        return asdict(self)
