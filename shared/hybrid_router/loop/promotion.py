"""Promotion by a test: is a new router better than the base one on the same held-out queries?

:func:`promotion_test` is a paired percentile bootstrap of the APGR difference: the held-out queries are resampled
with replacement ``n_boot`` times, both routers' APGR is recomputed on each resample (the same queries for both:
the pairing removes the query-to-query variance the two share; APGR as ``evaluate_scores`` computes it, through
:func:`hybrid_router.train.evaluation.apgr_of_sorted_gains`), and the new router is ``better`` only when the
one-sided lower confidence bound of ``APGR_new - APGR_base`` at ``confidence`` is above ``min_gain``.

Calibration (a simulation on the shipped labels, GSM8K plus 1,700 MMLU queries, with routers whose scores are the
oracle's blurred by noise; 1,000 holdouts per size; the table is in the comment of ``MIN_HOLDOUT_QUERIES`` in
:mod:`hybrid_router.loop.learn`): at 95% confidence a router truly worse by 0.05 APGR is promoted at most 2.1% of
the time on 25 to 500 held-out queries, and one exactly as good 1.8% to 5.6% (within simulation error of 5% from
100 queries on; the percentile bootstrap of this ratio statistic is conservative on small holdouts). The price is
power: a router truly better by 0.05 APGR is promoted 6% of the time on 50 held-out queries and 38% on 500; one
better by 0.14, 21% on 50, 47% on 100 and 99% on 500. A percentile bootstrap was kept over BCa (which promoted an
equally good router 11% of the time on 25 queries) and over a permutation test on percentile ranks (as calibrated
for ``min_gain=0``, but it gives no lower bound to compare with a ``min_gain`` above 0).

:func:`cost_check` is the deployment check beside it: at the base router's default threshold the base reaches
some quality with some share of large calls; the new router must reach that quality with no more large calls
(within :data:`COST_TOLERANCE`).

Both are pure functions of scores and per-query qualities, usable from a benchmark.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..train.evaluation import NO_GAP, apgr_of_sorted_gains, quality_curve

#: The new router may need this much larger a share of large calls than the base at the base's operating point
#: (2 percentage points of the held-out calls) and still pass :func:`cost_check`.
COST_TOLERANCE = 0.02

_CHUNK = 2_000_000  # resampled entries per block (bounded memory on large holdouts)


def _as_arrays(*arrays) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=np.float64).ravel() for a in arrays]
    n = len(out[0])
    if n == 0 or any(len(a) != n for a in out):
        raise ValueError("scores and qualities must be non-empty and of equal length")
    if not all(np.all(np.isfinite(a)) for a in out):
        raise ValueError("scores and qualities must be finite")
    return out


@dataclass(frozen=True)
class PromotionTest:
    """The paired test of ``APGR_new - APGR_base`` on ``n`` held-out queries."""

    n: int
    base_apgr: float
    new_apgr: float
    gain: float
    lower_bound: float
    confidence: float
    min_gain: float
    p_value: float
    n_boot: int
    better: bool
    note: str = ""
    method: str = "paired percentile bootstrap over held-out queries"

    def row(self) -> dict[str, float | str]:
        """One row of the decision table."""
        return {
            "held-out queries": str(self.n),
            "gain (new - base)": self.gain,
            f"lower bound @{self.confidence:.0%}": self.lower_bound,
            "needs >": self.min_gain,
            "p": self.p_value,
            "test": "passed" if self.better else "failed",
        }

    def to_dict(self) -> dict:
        """JSON-able."""
        return asdict(self)


def promotion_test(
    base_scores,
    new_scores,
    small_q,
    large_q,
    *,
    confidence: float = 0.95,
    min_gain: float = 0.0,
    n_boot: int = 2000,
    seed: int = 0,
) -> PromotionTest:
    """Is the new router's APGR higher than the base's by more than ``min_gain``, at ``confidence``?

    Paired percentile bootstrap over the queries (see the module docstring): ``lower_bound`` is the ``1 -
    confidence`` quantile of the resampled ``APGR_new - APGR_base``, ``p_value`` the bootstrap share of resamples
    with a gain of at most ``min_gain`` (one-sided), and ``better`` is ``lower_bound > min_gain``. When the large
    model is not better than the small one on these queries on average, APGR cannot rank routers (its sign flips):
    ``better`` is False and ``note`` says why. Deterministic for a given ``seed``.
    """
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence!r}")
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100, got {n_boot!r}")
    base_scores, new_scores, small_q, large_q = _as_arrays(base_scores, new_scores, small_q, large_q)
    n = len(small_q)
    gain = large_q - small_q
    orders, ranks = [], []
    for s in (base_scores, new_scores):
        order = np.argsort(s, kind="stable")
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        orders.append(order)
        ranks.append(rank)
    base_apgr, new_apgr = (float(apgr_of_sorted_gains(gain[o])[0]) for o in orders)
    observed = new_apgr - base_apgr
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    block = max(1, _CHUNK // n)
    for start in range(0, n_boot, block):
        idx = rng.integers(0, n, size=(min(block, n_boot - start), n))
        # a resample in a router's order: its queries sorted by their rank in the full holdout (stable ties)
        per_router = [apgr_of_sorted_gains(gain[o[np.sort(r[idx], axis=1)]]) for o, r in zip(orders, ranks)]
        diffs[start : start + len(idx)] = per_router[1] - per_router[0]
    lower = float(np.quantile(diffs, 1.0 - confidence))
    p_value = float((1 + np.sum(diffs <= min_gain)) / (n_boot + 1))
    note = ""
    better = lower > min_gain
    if not np.mean(gain) > NO_GAP:
        note = "the large model is not better than the small one on these queries: APGR cannot rank routers"
        better = False
    return PromotionTest(n, base_apgr, new_apgr, observed, lower, confidence, min_gain, p_value, n_boot, better, note)


@dataclass(frozen=True)
class CostCheck:
    """Large calls the new router needs to reach the quality the base router reaches at its default threshold."""

    threshold: float
    base_large: float
    base_quality: float
    new_large: float | None
    tolerance: float
    ok: bool

    def row(self) -> dict[str, float | str]:
        """One row of the decision table."""
        return {
            "base threshold": self.threshold,
            "base quality": self.base_quality,
            "large: base": self.base_large,
            "large: new": "never" if self.new_large is None else self.new_large,
            "tolerance": self.tolerance,
            "cost check": "passed" if self.ok else "failed",
        }

    def to_dict(self) -> dict:
        """JSON-able."""
        return asdict(self)


def cost_check(
    base_scores, new_scores, small_q, large_q, base_threshold: float, *, tolerance: float = COST_TOLERANCE
) -> CostCheck:
    """Does the new router reach the base's realised quality at its default threshold with no more large calls?

    The base sends the queries scoring below ``base_threshold`` large and reaches mean quality ``base_quality``
    with ``base_large`` of the calls large. ``new_large`` is the least share of large calls (its lowest-scoring
    queries first) at which the new router reaches that quality (None: at none); the check passes when
    ``new_large <= base_large + tolerance``.
    """
    base_scores, new_scores, small_q, large_q = _as_arrays(base_scores, new_scores, small_q, large_q)
    large = base_scores < base_threshold
    base_large = float(np.mean(large))
    base_quality = float(np.mean(np.where(large, large_q, small_q)))
    share, quality = quality_curve(new_scores, small_q, large_q)
    reached = np.nonzero(quality >= base_quality - 1e-9)[0]
    new_large = float(share[reached[0]]) if len(reached) else None
    ok = new_large is not None and new_large <= base_large + tolerance + 1e-12
    return CostCheck(float(base_threshold), base_large, base_quality, new_large, float(tolerance), ok)
