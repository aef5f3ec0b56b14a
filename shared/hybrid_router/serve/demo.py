"""The ``hybrid-llm demo`` job: route a built-in mix of queries, answer each with the chosen model, total the cost.

Prices (dollars per million input / output tokens) default to :data:`DEFAULT_SMALL_PRICE` for the small model
(a tiny self-hosted model: a nominal $0.02 / $0.04) and :data:`DEFAULT_LARGE_PRICE` for the large one (gpt-4o-mini
list prices, $0.15 / $0.60), so "saved" compares the routed run with sending every query to the large model at
those rates. Both are options of the command.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from ..core.fallback import FallbackRunner
from ..core.options import RoutingOptions
from ..core.pricing import CostTracker, ModelPrice, PriceTable
from ..core.router import HybridRouter
from .backends import ChatBackend

DEFAULT_SMALL_PRICE = ModelPrice(0.02, 0.04)
DEFAULT_LARGE_PRICE = ModelPrice(0.15, 0.60)

#: Trivial to hard: greetings and lookups first, multi-step maths, proofs and code last.
DEMO_QUERIES = (
    "Hi! How are you today?",
    "What is 2 + 2?",
    "What is the capital of France?",
    "Translate 'good morning' into Spanish.",
    "Give me a synonym for 'happy'.",
    "Write a haiku about autumn leaves.",
    "Summarize the plot of Romeo and Juliet in one sentence.",
    "A train leaves at 3:40 pm and the trip takes 2 h 35 min. At what time does it arrive?",
    "Explain the difference between TCP and UDP, with one use case for each.",
    "Prove that there are infinitely many prime numbers.",
    "Write a Python function that returns the longest palindromic substring of a string in O(n^2) time.",
    "Derive the closed-form least-squares solution for linear regression and explain when X^T X is singular.",
)


@dataclass
class DemoRow:
    """One routed query."""

    query: str
    route: str
    score: float | None
    answered_by: str
    model: str | None
    latency_s: float
    input_tokens: int
    output_tokens: int
    cost: float
    fallback: bool
    answer: str


@dataclass
class DemoResult:
    """All rows and the cost totals."""

    rows: list[DemoRow]
    tracker: CostTracker
    threshold: float
    small_model: str
    large_model: str
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)

    def totals(self) -> dict[str, Any]:
        """Calls per route, dollars spent, dollars if all-large, and the savings."""
        t = self.tracker
        return {
            "calls": t.calls,
            "small": t.routes["small"],
            "large": t.routes["large"],
            "cost": t.total_cost,
            "all_large_cost": t.all_large_cost,
            "saved": t.savings,
            "saved_pct": 100 * t.savings / t.all_large_cost if t.all_large_cost else 0.0,
            "latency_s": sum(r.latency_s for r in self.rows),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what ``--json`` writes)."""
        return {
            "small_model": self.small_model,
            "large_model": self.large_model,
            "threshold": self.threshold,
            "prices_per_million": self.prices,
            "queries": [asdict(r) for r in self.rows],
            "totals": self.totals(),
        }


def run_demo(
    router: HybridRouter,
    small: ChatBackend,
    large: ChatBackend,
    *,
    queries: Sequence[str] = DEMO_QUERIES,
    max_tokens: int = 32,
    threshold: float | None = None,
    small_price: ModelPrice = DEFAULT_SMALL_PRICE,
    large_price: ModelPrice = DEFAULT_LARGE_PRICE,
    progress: bool = True,
) -> DemoResult:
    """Route and answer every query (fallback on failure) and total the cost."""
    from tqdm.auto import tqdm

    prices = {small.name: small_price, large.name: large_price}
    tracker = CostTracker(PriceTable(prices))
    runner = FallbackRunner(model_names=(small.name, large.name))
    backends = {"small": small, "large": large}
    options = RoutingOptions(quality_threshold=threshold if threshold is not None else router.default_threshold)
    rows = []
    for query in tqdm(queries, desc="routing demo queries", unit="query", disable=not progress):
        decision = router.decide(query, options, "demo")
        body = {"messages": [{"role": "user", "content": query}], "max_tokens": max_tokens, "temperature": 0}
        started = time.perf_counter()
        response, answered = runner.run(decision, lambda target, body=body: backends[target].complete(body))
        latency = time.perf_counter() - started
        usage = response.get("usage") or {}
        inp, out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        cost = tracker.record(answered.metadata(), inp, out)
        answer = ((response.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
        rows.append(
            DemoRow(
                query,
                decision.target,
                decision.score,
                answered.answered_by,
                answered.model_name,
                latency,
                inp,
                out,
                cost,
                answered.fallback,
                answer.strip(),
            )
        )
    return DemoResult(
        rows,
        tracker,
        options.quality_threshold,
        small.name,
        large.name,
        {name: (p.input_per_million, p.output_per_million) for name, p in prices.items()},
    )


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_demo(result: DemoResult, query_width: int = 44, answer_width: int = 110) -> str:
    """The printed table (each query's row, then its answer on the next line) plus the totals line."""
    model_width = max([len(str(r.model)) for r in result.rows] + [5])
    header = (
        f"{'query':<{query_width}} {'route':<5} {'score':>5} {'model':<{model_width}} {'latency':>7} {'tokens':>9} "
        f"{'cost $':>10}"
    )
    lines = [header, "-" * len(header)]
    for r in result.rows:
        score = "-" if r.score is None else f"{r.score:.2f}"
        route = r.answered_by + ("*" if r.fallback else "")
        lines.append(
            f"{_cut(r.query, query_width):<{query_width}} {route:<5} {score:>5} {str(r.model):<{model_width}} "
            f"{r.latency_s:>6.1f}s {f'{r.input_tokens}+{r.output_tokens}':>9} {r.cost:>10.7f}"
        )
        lines.append(f"    -> {_cut(r.answer, answer_width)}")
    t = result.totals()
    lines.append("-" * len(header))
    lines.append(
        f"{t['calls']} queries at threshold {result.threshold:.2f}: {t['small']} small, {t['large']} large"
        + ("  (* = fallback)" if any(r.fallback for r in result.rows) else "")
    )
    lines.append(
        f"cost ${t['cost']:.7f} vs all-large ${t['all_large_cost']:.7f}: saved ${t['saved']:.7f} "
        f"({t['saved_pct']:.1f}%)"
    )
    lines.append(
        "prices ($ per million tokens in/out): "
        + ", ".join(f"{name} {p[0]:g}/{p[1]:g}" for name, p in result.prices.items())
    )
    return "\n".join(lines)
