"""``report``: what routing would have saved on a routing log, at several thresholds.

Works on any routing log: routed traffic, observe mode (the large model answered every call and the row records
the decision the router *would* have made: its ``score``), replays. For each threshold ``t`` a call goes small when
its logged router score is ``>= t``:

- **calls**: the share of calls that would go to each model (calls with a forced route, no score, are left out);
- **cost**: dollars when the log has costs: a call's cost for the model it would use is its logged cost when that
  model answered it (the answer or the shadow row), else the mean logged cost of that model's calls;
- **quality drop**: estimated from the *scored pairs* (calls where both models' answers were graded, i.e. shadow
  answers): ``(q_large - q_routed) / |q_large|`` over those pairs. Shadow calls are a uniform random sample of the
  traffic, so this is an unbiased estimate; its noise shrinks with the number of pairs (printed).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..traffic.exports import resolve_scorer, scored_pairs
from ..traffic.log_scoring import scorer_names
from ..traffic.routing_log import LogTarget, log_name, read_calls

LARGE_SHARES = (0.9, 0.75, 0.5, 0.25, 0.1)


@dataclass
class ReportRow:
    threshold: float
    note: str
    large_share: float
    cost: float | None
    saved: float | None
    quality_drop: float | None


@dataclass
class LogReport:
    """The report of one log (see the module docstring)."""

    path: str
    calls: int
    forced: int
    scorer: str | None
    n_pairs: int
    rows: list[ReportRow]
    all_large_cost: float | None
    scores: np.ndarray = field(repr=False)
    pair_scores: np.ndarray = field(repr=False)
    pair_small: np.ndarray = field(repr=False)
    pair_large: np.ndarray = field(repr=False)

    def format(self) -> str:
        head = f"{self.path}: {self.calls} calls with a router score" + (
            f" ({self.forced} with a forced route left out)" if self.forced else ""
        )
        if self.scorer:
            head += f"; {self.n_pairs} scored pairs ({self.scorer}) for the quality drop"
        else:
            head += "; no scored pairs, so no quality estimate (log with shadow_rate > 0, then hybrid-llm score-log)"
        if self.all_large_cost is not None:
            head += f"; all-large cost ${self.all_large_cost:.6f}"
        cols = ["threshold", "", "large calls", "small calls", "est. cost $", "saved", "quality drop (pairs)"]
        cells = [cols]
        for r in self.rows:
            cells.append(
                [
                    f"{r.threshold:.3f}",
                    r.note,
                    f"{r.large_share:.1%}",
                    f"{1 - r.large_share:.1%}",
                    "-" if r.cost is None else f"{r.cost:.6f}",
                    "-" if r.saved is None else f"{r.saved:.1%}",
                    "-" if r.quality_drop is None else f"{r.quality_drop:+.2%}",
                ]
            )
        widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return head + "\n" + "\n".join(lines)


def _drop(t: float, scores: np.ndarray, small: np.ndarray, large: np.ndarray) -> float | None:
    if not len(scores):
        return None
    q_large = float(np.mean(large))
    routed = float(np.mean(np.where(scores >= t, small, large)))
    return (q_large - routed) / max(abs(q_large), 1e-12)


def build_report(path: LogTarget, *, scorer: str | None = None, thresholds: list[float] | None = None) -> LogReport:
    """Measure the log (``ValueError`` when it has no call with a router score)."""
    rows = list(read_calls(path))
    answers = [r for r in rows if r["kind"] == "answer"]
    routed = [r for r in answers if r["score"] is not None]
    if not routed:
        raise ValueError(
            f"{log_name(path)}: no call with a router score to report on"
            + (f" ({len(answers)} calls, all with a forced route)" if answers else " (the log is empty)")
        )
    scores = np.array([r["score"] for r in routed], dtype=np.float64)
    # costs: per pair and model, and each model's mean as the fallback estimate
    costs: dict[tuple[str, str], float] = {}
    per_model: dict[str, list[float]] = {"small": [], "large": []}
    for r in rows:
        if r["cost"] is not None and r["answered_by"] in per_model:
            costs[(r["pair_id"], r["answered_by"])] = float(r["cost"])
            per_model[r["answered_by"]].append(float(r["cost"]))
    means = {m: (float(np.mean(v)) if v else None) for m, v in per_model.items()}
    have_costs = means["small"] is not None and means["large"] is not None
    if have_costs:
        small_cost = np.array([costs.get((r["pair_id"], "small"), means["small"]) for r in routed])
        large_cost = np.array([costs.get((r["pair_id"], "large"), means["large"]) for r in routed])
    # scored pairs
    name = None
    if scorer is not None or scorer_names(path):
        name = resolve_scorer(path, scorer)
    pairs = scored_pairs(path, name) if name else []
    pairs = [p for p in pairs if p.small["score"] is not None]
    pair_scores = np.array([p.small["score"] for p in pairs], dtype=np.float64)
    pair_small = np.array([p.small_score for p in pairs], dtype=np.float64)
    pair_large = np.array([p.large_score for p in pairs], dtype=np.float64)
    # thresholds: the logged one(s), share quantiles, the cheapest one within 1% drop on the pairs
    chosen: dict[float, str] = {}
    if thresholds:
        chosen.update({float(t): "given" for t in thresholds})
    else:
        logged = Counter(round(float(r["threshold"]), 6) for r in routed if r["threshold"] is not None)
        for t, _ in logged.most_common(2):
            chosen[t] = "logged threshold"
        for share in LARGE_SHARES:
            t = round(float(np.quantile(scores, share)), 6)
            chosen.setdefault(t, f"~{share:.0%} large")
        if len(pairs):
            ok = [t for t in np.unique(pair_scores) if (_drop(t, pair_scores, pair_small, pair_large) or 0) <= 0.01]
            if ok:
                t = round(float(min(ok)), 6)
                chosen[t] = f"{chosen[t]}, <=1% drop on pairs" if t in chosen else "<=1% drop on pairs"
    out = []
    for t, note in sorted(chosen.items()):
        small = scores >= t
        cost = saved = None
        if have_costs:
            cost = float(np.sum(np.where(small, small_cost, large_cost)))
            all_large = float(np.sum(large_cost))
            saved = 1 - cost / all_large if all_large > 0 else None
        drop = _drop(t, pair_scores, pair_small, pair_large) if len(pairs) else None
        out.append(ReportRow(t, note, float(np.mean(~small)), cost, saved, drop))
    return LogReport(
        log_name(path),
        len(routed),
        len(answers) - len(routed),
        name,
        len(pairs),
        out,
        float(np.sum(large_cost)) if have_costs else None,
        scores,
        pair_scores,
        pair_small,
        pair_large,
    )


def plot_report(report: LogReport, png: str | Path) -> None:
    """A PNG: quality drop on the scored pairs and estimated saving vs the share of calls sent large."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ValueError("--plot needs matplotlib: pip install 'hybrid-llm[plot]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.unique(np.concatenate([report.scores, [0.0, 1.0 + 1e-9]]))
    large = np.array([np.mean(report.scores < t) for t in grid])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if report.n_pairs:
        drops = np.array([_drop(t, report.pair_scores, report.pair_small, report.pair_large) for t in grid])
        ax.plot(large * 100, drops * 100, label=f"quality drop, {report.n_pairs} scored pairs ({report.scorer})")
    ax.plot(large * 100, (1 - large) * 100, "--", label="calls answered small (%)")
    for r in report.rows:
        if r.saved is not None:
            ax.scatter([r.large_share * 100], [r.saved * 100], marker="o", color="green", s=18)
    if any(r.saved is not None for r in report.rows):
        ax.scatter([], [], marker="o", color="green", s=18, label="estimated cost saved (%)")
    for r in report.rows:
        ax.axvline(r.large_share * 100, color="grey", alpha=0.25, lw=0.8)
    ax.set_xlabel("calls sent to the large model (%)")
    ax.set_ylabel("%")
    ax.set_title(f"what routing would have saved: {Path(report.path).name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
