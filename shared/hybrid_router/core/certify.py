"""Certified thresholds: a promise about quality (or cost) on new queries, not only on the calibration rows.

A calibration table says, for each threshold, the share of calls sent large and the quality drop vs always-large
measured on labelled rows. Taking the cheapest threshold whose *measured* drop is at most ``d`` overfits those
rows (a winner's curse, worst for the cascade's two thresholds). Learn-then-Test (Angelopoulos, Bates, Candès,
Jordan, Lei 2021) turns the choice into a test with a finite-sample guarantee:

- each candidate policy ``j`` has a risk ``R_j`` (its expected drop on new queries from the same distribution);
- the candidates are put in a fixed order, from the most conservative (every call large: drop 0) towards cheaper
  ones, chosen *before* the calibration rows are looked at (by threshold for routing; for the cascade, by a path
  picked on other rows, see :mod:`hybrid_router.core.cascade`);
- walking that order, a candidate is certified for ``d`` while the upper confidence bound of its drop stays <= d
  (fixed-sequence testing: no multiplicity correction is needed, the walk stops at the first failure);
- then ``P[the chosen policy's expected drop > d] <= delta``, for any ``d`` asked later.

The bound: the relative drop is ``E[l] / E[q_large]`` with the per-query loss ``l = (q_large - q_small) * [sent
small]``. Its upper bound is an upper confidence bound of ``E[l]`` (level ``delta / 2``) over a lower confidence
bound of ``E[q_large]`` (level ``delta / 2``); both come from the betting confidence bound of Waudby-Smith and
Ramdas (2023, "Estimating means of bounded random variables by betting": a predictable plug-in bet, valid for any
``n``, and tight when the loss has little variance, as it does when most calls go large). The cost promise
(``large_share``) is the same walk from the cheapest policy upwards, on the indicator "sent large".

What the guarantee does not cover: new queries from another distribution (a new workload), and the difference
between the out-of-fold scores that were tested and the refitted model that serves (the thresholds are carried
over by rank, see :func:`hybrid_router.train.training.same_ranks`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The default risk level: a certified promise fails with probability at most this.
DEFAULT_DELTA = 0.1
#: The bet is capped at this fraction of the capital (any value < 1 is valid; 3/4 as Waudby-Smith and Ramdas).
BET_CAP = 0.75
#: Bisection steps of the bound (2 ** -26 of the range, then rounded up at 6 decimals when stored).
BISECTION_STEPS = 26
#: Rows of samples handled at once (memory: this many values per array).
CHUNK_VALUES = 2_000_000
METHOD = "Learn-then-Test, fixed-sequence, betting bound (Waudby-Smith & Ramdas 2023)"


def check_delta(delta: float) -> float:
    """A risk level in (0, 1), or a ValueError."""
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0.0 < float(delta) < 1.0:
        raise ValueError(f"delta must be a number in (0, 1), got {delta!r}")
    return float(delta)


def upper_bounds(x01: np.ndarray, delta: float) -> np.ndarray:
    """Per row of ``x01`` (values in [0, 1]), an upper confidence bound of the row's mean at level ``delta``.

    ``P[mean > bound] <= delta`` for each row, whatever the distribution on [0, 1], when the row's values are
    independent draws (in the order given). A constant row of zeros still gets a small positive bound.
    """
    x01 = np.atleast_2d(np.asarray(x01, dtype=np.float64))
    if x01.size and (x01.min() < -1e-12 or x01.max() > 1 + 1e-12):
        raise ValueError("upper_bounds needs values in [0, 1]")
    rows, n = x01.shape
    if n == 0:
        return np.ones(rows)
    step = max(1, CHUNK_VALUES // n)
    return np.concatenate([_betting_bound(x01[i : i + step], delta) for i in range(0, rows, step)])


def _betting_bound(x: np.ndarray, delta: float) -> np.ndarray:
    rows, n = x.shape
    t = np.arange(1, n + 1, dtype=np.float64)
    mean = (0.5 + np.cumsum(x, axis=1)) / (t + 1)
    var = (0.25 + np.cumsum((x - mean) ** 2, axis=1)) / (t + 1)
    var_before = np.concatenate([np.full((rows, 1), 0.25), var[:, :-1]], axis=1)  # predictable: x_1..x_{t-1}
    bet = np.minimum(np.sqrt(2.0 * np.log(1.0 / delta) / (n * var_before)), BET_CAP)
    target = np.log(1.0 / delta)
    lo, hi = np.zeros(rows), np.ones(rows)
    # H0(m): mean >= m is rejected when the capital of betting on "below m" reaches 1/delta; the capital grows
    # with m (the bets do not depend on m), so the rejected m form an interval [bound, 1]: bisect for its start.
    for _ in range(BISECTION_STEPS):
        m = (lo + hi) / 2
        capital = np.cumsum(np.log1p(bet * (m[:, None] - x)), axis=1).max(axis=1)
        rejected = capital >= target
        hi, lo = np.where(rejected, m, hi), np.where(rejected, lo, m)
    return np.maximum(
        hi + 2.0**-BISECTION_STEPS, x.mean(axis=1)
    )  # never below the sample mean (still valid: only larger)


def lower_bounds(x01: np.ndarray, delta: float) -> np.ndarray:
    """Per row, a lower confidence bound of the mean at level ``delta`` (values in [0, 1])."""
    return 1.0 - upper_bounds(1.0 - np.atleast_2d(np.asarray(x01, dtype=np.float64)), delta)


def quality_range(*qualities: np.ndarray) -> tuple[float, float]:
    """The range a quality can take: [0, 1] widened to what the data shows (e.g. a 1-10 judge grade)."""
    lo = min(0.0, *(float(np.min(q)) for q in qualities))
    hi = max(1.0, *(float(np.max(q)) for q in qualities))
    return lo, hi


@dataclass(frozen=True)
class Certificate:
    """What a certified table promises: with probability >= 1 - ``delta`` over the ``n`` calibration rows."""

    delta: float
    n: int
    large_quality_lcb: float | None
    method: str = METHOD
    #: what ``n`` counts: calibration queries, or whole workloads (see :func:`workload_bounds`)
    unit: str = "queries"

    def to_dict(self) -> dict:
        lcb = None if self.large_quality_lcb is None else round(self.large_quality_lcb, 6)
        return {"delta": self.delta, "n": self.n, "unit": self.unit, "large_quality_lcb": lcb, "method": self.method}

    @classmethod
    def from_dict(cls, d: dict) -> "Certificate":
        lcb = d.get("large_quality_lcb")
        return cls(
            check_delta(d["delta"]),
            int(d["n"]),
            None if lcb is None else float(lcb),
            str(d.get("method", METHOD)),
            str(d.get("unit", "queries")),
        )


def drop_and_share_bounds(
    to_large: np.ndarray,
    small_q: np.ndarray,
    large_q: np.ndarray,
    delta: float,
    *,
    always_large: np.ndarray,
    never_large: np.ndarray,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, Certificate]:
    """Upper confidence bounds of each policy's relative quality drop and of its large-call share.

    ``to_large[j, i]`` says whether policy ``j`` sends row ``i`` to the large model. The drop bounds are each valid
    at level ``delta`` (``delta / 2`` for the loss, ``delta / 2`` for the large model's mean quality, shared by all
    policies); the share bounds at level ``delta``. The policies flagged ``always_large`` send every possible query
    large (drop 0 and share 1 on any data) and those flagged ``never_large`` none (share 0): those values are exact,
    not estimated. Fixed-sequence walks over these bounds are in :func:`walk_from`.
    """
    to_large = np.atleast_2d(np.asarray(to_large, dtype=bool))
    small_q, large_q = np.asarray(small_q, np.float64), np.asarray(large_q, np.float64)
    n = len(large_q)
    order = np.random.default_rng(seed).permutation(n)  # the bound reads rows in a fixed random order
    to_large, small_q, large_q = to_large[:, order], small_q[order], large_q[order]
    lo, hi = quality_range(small_q, large_q)
    span = hi - lo
    q_lcb = lo + span * float(lower_bounds(((large_q - lo) / span)[None, :], delta / 2)[0])
    loss = np.where(to_large, 0.0, large_q - small_q)  # in [-span, span]
    loss_ucb = upper_bounds((loss + span) / (2 * span), delta / 2) * 2 * span - span
    drop = np.where(q_lcb > 0, loss_ucb / max(q_lcb, 1e-12), np.inf)
    share = upper_bounds(to_large.astype(np.float64), delta)
    all_large, none_large = np.asarray(always_large, bool), np.asarray(never_large, bool)
    drop = np.where(all_large, 0.0, drop)
    share = np.where(all_large, 1.0, np.where(none_large, 0.0, share))
    return drop, share, Certificate(delta, n, q_lcb)


WORKLOAD_METHOD = "split conformal over workloads: at most k of m left-out workloads exceed the target"


def workload_bounds(drops: np.ndarray, shares: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray, Certificate]:
    """Bounds that hold on a new *workload*, from a router's measured drop and share on ``m`` workloads it never saw.

    ``drops[s, j]`` and ``shares[s, j]`` are the realised drop and large share of threshold ``j`` (ascending) on
    workload ``s``. Each workload's drop is first walked down from the safe end (its "critical threshold" for any
    ``d`` is then where its walked drop crosses ``d``); the bound of threshold ``j`` is the ``(k+1)``-th largest
    walked drop over workloads, with the largest ``k`` such that ``(k + 1) / (m + 1) <= delta``. For a new workload
    exchangeable with these, P[its realised drop at the chosen threshold > d] <= (k + 1) / (m + 1) (split conformal
    prediction over workloads), the ``delta`` the certificate states. The same for shares, walked up.
    """
    drops, shares = np.atleast_2d(np.asarray(drops, np.float64)), np.atleast_2d(np.asarray(shares, np.float64))
    m = drops.shape[0]
    k = int(np.floor(delta * (m + 1))) - 1
    if k < 0:
        raise ValueError(f"{m} workloads cannot certify delta={delta:g}: need at least {int(np.ceil(1 / delta)) - 1}")
    walked_drop = np.maximum.accumulate(drops[:, ::-1], axis=1)[:, ::-1]
    walked_share = np.maximum.accumulate(shares, axis=1)
    drop = -np.sort(-walked_drop, axis=0)[k]
    share = -np.sort(-walked_share, axis=0)[k]
    achieved = (k + 1) / (m + 1)
    return drop, share, Certificate(achieved, m, None, f"{WORKLOAD_METHOD} (k={k}, m={m})", "workloads")


def walk_from(bounds: np.ndarray, start: str) -> np.ndarray:
    """Fixed-sequence testing: each entry's bound becomes the largest bound met walking to it from ``start``.

    ``start="end"`` walks from the last entry backwards (the drop walk: the last entry is the most conservative),
    ``"start"`` from the first forwards (the cost walk). An entry is certified for a level ``d`` iff its walked
    bound is <= d: the walk to it never met a bound above ``d``.
    """
    bounds = np.asarray(bounds, dtype=np.float64)
    if start == "end":
        return np.maximum.accumulate(bounds[::-1])[::-1]
    if start == "start":
        return np.maximum.accumulate(bounds)
    raise ValueError(f"start must be 'start' or 'end', got {start!r}")
