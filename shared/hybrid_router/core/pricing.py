"""Prices and cost totals shared by both wrappers' cost callbacks.

A price table maps a model name to dollars per million input and output tokens. :class:`CostTracker` totals, per
model, calls, tokens and dollars, and the savings versus sending every call to the large model (the same
tokens priced at the large model's rates).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class ModelPrice:
    """Dollars per million input / output tokens."""

    input_per_million: float
    output_per_million: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """Dollars for one call."""
        return (input_tokens * self.input_per_million + output_tokens * self.output_per_million) / 1e6


def _price(name: str, value: Any) -> ModelPrice:
    if isinstance(value, ModelPrice):
        return value
    if isinstance(value, Mapping):
        value = (value.get("input"), value.get("output"))
    try:
        inp, out = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"price of {name!r} must be (input, output) dollars per million tokens, got {value!r}"
        ) from exc
    if inp < 0 or out < 0 or inp != inp or out != out:
        raise ValueError(f"price of {name!r} must be non-negative numbers, got {value!r}")
    return ModelPrice(inp, out)


class PriceTable:
    """Model name -> :class:`ModelPrice`; accepts ``{"name": (in, out)}`` or ``{"name": {"input":..,"output":..}}``.

    Unknown models cost 0 and are listed in :attr:`CostTracker.unpriced`.
    """

    def __init__(self, prices: Mapping[str, Any] | None = None):
        self.prices = {name: _price(name, v) for name, v in (prices or {}).items()}

    def get(self, model: str | None) -> ModelPrice | None:
        """The price of ``model``, or None if not in the table."""
        return self.prices.get(model) if model else None


@dataclass
class ModelTotals:
    """Totals for one model."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    fallbacks: int = 0


@dataclass
class CostTracker:
    """Thread-safe totals of routed calls; feed it with :meth:`record` (the wrappers' callbacks do)."""

    prices: PriceTable = field(default_factory=PriceTable)
    per_model: dict[str, ModelTotals] = field(default_factory=dict)
    all_large_cost: float = 0.0
    unpriced: set[str] = field(default_factory=set)
    routes: dict[str, int] = field(default_factory=lambda: {"small": 0, "large": 0})

    def __post_init__(self) -> None:
        if not isinstance(self.prices, PriceTable):
            self.prices = PriceTable(self.prices)
        self._lock = threading.Lock()

    def record(self, hybrid: Mapping[str, Any], input_tokens: int, output_tokens: int) -> float:
        """Add one call described by its ``hybrid_router`` metadata and token counts; returns its cost."""
        model = hybrid.get("model") or hybrid.get("answered_by") or "unknown"
        price = self.prices.get(model)
        large_price = self.prices.get(hybrid.get("large_model"))
        cost = price.cost(input_tokens, output_tokens) if price else 0.0
        counterfactual = large_price.cost(input_tokens, output_tokens) if large_price else cost
        with self._lock:
            totals = self.per_model.setdefault(model, ModelTotals())
            totals.calls += 1
            totals.input_tokens += int(input_tokens)
            totals.output_tokens += int(output_tokens)
            totals.cost += cost
            totals.fallbacks += int(bool(hybrid.get("fallback")))
            self.all_large_cost += counterfactual
            answered = hybrid.get("answered_by")
            if answered in self.routes:
                self.routes[answered] += 1
            for name in (model, hybrid.get("large_model")):
                if name and self.prices.get(name) is None:
                    self.unpriced.add(name)
        if hybrid.get("escalated") and hybrid.get("small_usage"):
            cost += self._record_rejected_small(hybrid)
        return cost

    def _record_rejected_small(self, hybrid: Mapping[str, Any]) -> float:
        """A cascade's escalated call also ran the small model: count that call (its answer was not used)."""
        model = hybrid.get("small_model") or "small"
        usage = hybrid["small_usage"]
        n_in, n_out = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
        price = self.prices.get(model)
        cost = price.cost(n_in, n_out) if price else 0.0
        with self._lock:
            totals = self.per_model.setdefault(model, ModelTotals())
            totals.calls += 1
            totals.input_tokens += n_in
            totals.output_tokens += n_out
            totals.cost += cost
            if price is None:
                self.unpriced.add(model)
        return cost

    @property
    def total_cost(self) -> float:
        """Dollars actually spent."""
        return sum(t.cost for t in self.per_model.values())

    @property
    def savings(self) -> float:
        """Dollars saved versus sending every call to the large model."""
        return self.all_large_cost - self.total_cost

    @property
    def calls(self) -> int:
        """Number of recorded calls."""
        return sum(t.calls for t in self.per_model.values())

    def summary(self) -> str:
        """A human-readable report."""
        lines = [f"Routed calls: {self.calls} (small {self.routes['small']}, large {self.routes['large']})"]
        for model, t in sorted(self.per_model.items()):
            lines.append(
                f"  {model}: {t.calls} calls, {t.input_tokens} in / {t.output_tokens} out tokens, ${t.cost:.6f}"
                + (f", {t.fallbacks} fallbacks" if t.fallbacks else "")
            )
        pct = 100 * self.savings / self.all_large_cost if self.all_large_cost else 0.0
        lines.append(
            f"Total cost: ${self.total_cost:.6f}; all-large cost: ${self.all_large_cost:.6f}; "
            f"saved ${self.savings:.6f} ({pct:.1f}%)"
        )
        if self.unpriced:
            lines.append(f"No price for: {', '.join(sorted(self.unpriced))} (counted as $0)")
        return "\n".join(lines)
