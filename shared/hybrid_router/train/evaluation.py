"""Routing-quality metrics: quality vs large-call share curves, cost advantage, APGR, CPT.

A router's score says "the small model is good enough"; routing a share ``c`` of calls to the large model sends
the ``c`` lowest-scoring queries there. Quality drop is relative to always-large:
``(q_large - q_routed) / |q_large|``. Cost advantage is the share of calls answered by the small model.

The same metrics apply to an answer verifier (its score ranks the small model's answers; the share is the share of
calls escalated to the large model) and to a calibrated cascade (:func:`evaluate_cascade`); both pay the small
model's call on every query they do not send large at once, which ``benchmarks/cascade_cost.py`` prices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.cascade import CascadeCalibration, simulate

DROP_LEVELS = (0.0, 0.01, 0.02, 0.05)
CA_LEVELS = (0.10, 0.20, 0.40)

#: A mean large-minus-small quality gain at or below this (in absolute value) is no gap: APGR is 1 there.
NO_GAP = 1e-12


def quality_curve(scores: np.ndarray, small_q: np.ndarray, large_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(large share c_k = k/n, mean routed quality) for k = 0..n, sending the k lowest scores to the large model."""
    scores, small_q, large_q = (np.asarray(a, dtype=np.float64) for a in (scores, small_q, large_q))
    n = len(scores)
    if n == 0 or not (len(small_q) == len(large_q) == n):
        raise ValueError("scores, small_q and large_q must be non-empty and of equal length")
    order = np.argsort(scores, kind="stable")
    gain = np.concatenate([[0.0], np.cumsum((large_q - small_q)[order])])
    return np.arange(n + 1) / n, (small_q.sum() + gain) / n


def random_curve(small_q: np.ndarray, large_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The expected curve of a router that picks the large model at random."""
    n = len(small_q)
    share = np.arange(n + 1) / n
    return share, np.mean(small_q) + share * (np.mean(large_q) - np.mean(small_q))


def oracle_scores(small_q: np.ndarray, large_q: np.ndarray) -> np.ndarray:
    """Scores of the oracle: the queries where the large model gains most are sent there first."""
    return np.asarray(small_q, dtype=np.float64) - np.asarray(large_q, dtype=np.float64)


@dataclass
class RoutingReport:
    """Metrics of one router on one data set (see module docstring)."""

    name: str
    cost_advantage_at_drop: dict[float, float]
    quality_drop_at_ca: dict[float, float]
    apgr: float
    cpt50: float
    cpt80: float
    share: np.ndarray = field(repr=False)
    quality: np.ndarray = field(repr=False)

    def row(self) -> dict[str, float | str]:
        """A flat dict for tables and JSON."""
        out: dict[str, float | str] = {"router": self.name}
        out.update({f"CA@{d:.0%}drop": v for d, v in self.cost_advantage_at_drop.items()})
        out.update({f"drop@{c:.0%}CA": v for c, v in self.quality_drop_at_ca.items()})
        out.update({"APGR": self.apgr, "CPT(50%)": self.cpt50, "CPT(80%)": self.cpt80})
        return out


def report_from_curve(name: str, share: np.ndarray, quality: np.ndarray, small_q, large_q) -> RoutingReport:
    """Metrics of a quality-vs-share curve."""
    q_small, q_large = float(np.mean(small_q)), float(np.mean(large_q))
    drop = (q_large - quality) / max(abs(q_large), 1e-12)
    ca = {d: float(np.max(1.0 - share[drop <= d + 1e-12], initial=0.0)) for d in DROP_LEVELS}
    drop_at = {c: float(np.interp(1.0 - c, share, drop)) for c in CA_LEVELS}
    gap = q_large - q_small
    pgr = (quality - q_small) / gap if abs(gap) > NO_GAP else np.ones_like(quality)
    apgr = float(np.sum((pgr[1:] + pgr[:-1]) / 2 * np.diff(share)))

    def cpt(level: float) -> float:
        reached = np.nonzero(pgr >= level - 1e-12)[0]
        return float(share[reached[0]]) if len(reached) else 1.0

    return RoutingReport(name, ca, drop_at, apgr, cpt(0.5), cpt(0.8), share, quality)


def apgr_of_sorted_gains(gains: np.ndarray) -> np.ndarray:
    """APGR of each row of per-query gains ``large_q - small_q`` already in the router's order (lowest score first).

    The closed form of :func:`report_from_curve`'s trapezoid: with ``G_k`` the sum of the first ``k`` gains and
    ``D = G_n``, ``APGR = sum_k G_k / (n D) - 1 / (2n)``; 1 where the mean gain is within :data:`NO_GAP` of 0 (no
    gap to recover). One matrix-vector product per call, so bootstrap resamples cost no more than sorting them.
    """
    gains = np.atleast_2d(np.asarray(gains, dtype=np.float64))
    n = gains.shape[-1]
    total = gains.sum(axis=-1)  # n * gap
    weighted = gains @ np.arange(n, 0, -1, dtype=np.float64)  # sum_k G_k = sum_j (n - j) g_(j), j from 0
    gap = np.abs(total) > NO_GAP * n
    return np.where(gap, weighted / (n * np.where(gap, total, 1.0)) - 1.0 / (2 * n), 1.0)


def apgr_resampled(scores: np.ndarray, small_q: np.ndarray, large_q: np.ndarray) -> np.ndarray:
    """APGR of each row of ``[B, n]`` arrays (e.g. bootstrap resamples), as :func:`evaluate_scores` computes it.

    A 1-d ``scores, small_q, large_q`` is one row: ``apgr_resampled(s, sq, lq)[0] == evaluate_scores(..., s, sq,
    lq).apgr`` (to rounding), ties in ``scores`` broken by position as there.
    """
    scores, small_q, large_q = (np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in (scores, small_q, large_q))
    order = np.argsort(scores, axis=1, kind="stable")
    return apgr_of_sorted_gains(np.take_along_axis(large_q - small_q, order, axis=1))


def evaluate_scores(name: str, scores: np.ndarray, small_q: np.ndarray, large_q: np.ndarray) -> RoutingReport:
    """Metrics of a router's scores on labelled queries."""
    share, quality = quality_curve(scores, small_q, large_q)
    return report_from_curve(name, share, quality, small_q, large_q)


def evaluate_with_references(
    scores: np.ndarray, small_q: np.ndarray, large_q: np.ndarray, name: str = "router"
) -> list[RoutingReport]:
    """The router next to a random router and the oracle on the same rows."""
    return [
        report_from_curve("random", *random_curve(small_q, large_q), small_q, large_q),
        evaluate_scores(name, scores, small_q, large_q),
        evaluate_scores("oracle", oracle_scores(small_q, large_q), small_q, large_q),
    ]


def cascade_curve(
    calibration: CascadeCalibration,
    route_scores: np.ndarray,
    verify_scores: np.ndarray,
    small_q: np.ndarray,
    large_q: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(large share, quality, small share) of a calibrated cascade on labelled queries, ascending in share.

    Each frontier pair of ``calibration`` (chosen on other data) is applied as it is, so on a test set this is an
    honest curve, not the best envelope of the test data; the ends (all small, all large) are added.
    """
    outcomes = [
        simulate(route_scores, verify_scores, small_q, large_q, r, v)
        for r, v in zip(calibration.route_thresholds, calibration.verify_thresholds)
    ]
    points = [(0.0, float(np.mean(small_q)), 1.0)] + [(o.large_share, o.quality, o.small_share) for o in outcomes]
    points.append((1.0, float(np.mean(large_q)), 0.0))
    points.sort()
    share, quality, small = (np.array(col) for col in zip(*points))
    return share, quality, small


def evaluate_cascade(
    name: str,
    calibration: CascadeCalibration,
    route_scores: np.ndarray,
    verify_scores: np.ndarray,
    small_q: np.ndarray,
    large_q: np.ndarray,
) -> RoutingReport:
    """Metrics of a calibrated cascade (share = calls that reach the large model, escalations included)."""
    share, quality, _ = cascade_curve(calibration, route_scores, verify_scores, small_q, large_q)
    return report_from_curve(name, share, quality, small_q, large_q)


def format_table(rows: list[dict[str, float | str]]) -> str:
    """A plain-text table (numbers to 3 decimals)."""
    if not rows:
        return ""
    cols = list(rows[0])
    cells = [[c for c in cols]] + [
        [f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot_reports(reports: list[RoutingReport], path: str, title: str = "") -> None:
    """Write a PNG of quality vs large-call share for each report (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for rep in reports:
        ax.plot(rep.share * 100, rep.quality, label=f"{rep.name} (APGR {rep.apgr:.3f})")
    ax.set_xlabel("calls sent to the large model (%)")
    ax.set_ylabel("mean quality")
    ax.set_title(title or "quality vs large-call share")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
