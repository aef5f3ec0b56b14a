"""The cascade policy: route, answer small, verify, escalate — and the calibration of its two thresholds.

A cascade has two thresholds. The router's score ``s_r`` (from the query alone) sends clearly hard queries to the
large model at once: ``s_r < route_threshold``. Otherwise the small model answers, and the answer verifier's score
``s_v`` (query and answer) accepts that answer (``s_v >= verify_threshold``) or escalates the query to the large
model, which then answers too (an escalated query pays both calls).

:class:`CascadeCalibration` tabulates, on held-out labelled data, the cost/quality frontier over both thresholds
jointly: for every pair on a grid of score quantiles, the share of calls that reach the large model, the share
that run the small model, and the quality drop vs always-large. Only Pareto-optimal pairs are kept (no other pair
has both fewer large calls and a lower drop). The routing options keep one meaning under both strategies:

- ``max_quality_drop=d``: the pair with the fewest large calls whose drop is <= d (the paper's rule, as routing);
- ``large_share=c``: the pair with the lowest drop among those sending at most c of the calls to the large model;
- ``quality_threshold=t``: the quality level that routing at threshold t reaches — its calibrated drop — reached
  by the cascade at the lowest cost (see :meth:`CascadeCalibration.thresholds_for_route_threshold`).

Route-only (``verify_threshold = 0``) and verify-only (``route_threshold = 0``) policies are both on the grid, so
on the calibration data the frontier is never worse than either. A ladder of more than two models is the same
idea with one (route, verify) pair per rung: this module keeps the two-model case and names its quantities so
that a ladder can reuse them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Threshold grids are this many score quantiles (plus 0 and a value above 1).
GRID_SIZE = 61


@dataclass(frozen=True)
class CascadeOutcome:
    """What a (route_threshold, verify_threshold) pair does to a set of queries."""

    large_share: float
    small_share: float
    quality: float


def simulate(
    route_scores: np.ndarray,
    verify_scores: np.ndarray,
    small_q: np.ndarray,
    large_q: np.ndarray,
    route_threshold: float,
    verify_threshold: float,
) -> CascadeOutcome:
    """Replay the cascade on labelled queries (both models' qualities known for each)."""
    direct = np.asarray(route_scores) < route_threshold
    escalated = ~direct & (np.asarray(verify_scores) < verify_threshold)
    to_large = direct | escalated
    quality = np.where(to_large, large_q, small_q).mean()
    return CascadeOutcome(float(to_large.mean()), float((~direct).mean()), float(quality))


def _grid(scores: np.ndarray, size: int) -> np.ndarray:
    inner = np.quantile(scores, np.linspace(0.0, 1.0, size))
    return np.unique(np.concatenate([[0.0], inner, np.nextafter(inner, 2.0), [np.nextafter(1.0, 2.0)]]))


def _pareto(large: np.ndarray, small: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """Indices of the pairs no other pair beats on (large share, drop); ties go to fewer small calls."""
    order = np.lexsort((small, drop, large))
    keep, best = [], np.inf
    for i in order:
        if drop[i] < best - 1e-12:
            keep.append(i)
            best = drop[i]
    return np.asarray(keep, dtype=int)


@dataclass
class CascadeCalibration:
    """The cascade's frontier: for each kept pair (ascending large share), its thresholds, shares and drop."""

    route_thresholds: np.ndarray
    verify_thresholds: np.ndarray
    large_share: np.ndarray
    small_share: np.ndarray
    quality_drop: np.ndarray
    n_queries: int

    @classmethod
    def fit(
        cls,
        route_scores: np.ndarray,
        verify_scores: np.ndarray,
        small_q: np.ndarray,
        large_q: np.ndarray,
        grid_size: int = GRID_SIZE,
    ) -> "CascadeCalibration":
        """Tabulate every pair of a quantile grid over both scores and keep the Pareto frontier."""
        arrays = [np.asarray(a, dtype=np.float64) for a in (route_scores, verify_scores, small_q, large_q)]
        s_r, s_v, q_s, q_l = arrays
        if len(s_r) == 0 or any(len(a) != len(s_r) for a in arrays):
            raise ValueError("cascade calibration needs equal-length, non-empty scores and qualities")
        r_grid, v_grid = _grid(s_r, grid_size), _grid(s_v, grid_size)
        direct = (s_r[None, :] < r_grid[:, None]).astype(np.float64)  # [R, n]
        rejected = (s_v[None, :] < v_grid[:, None]).astype(np.float64)  # [V, n]
        # a query reaches the large model if sent there directly, or if not and its answer is rejected: [R, V]
        n = len(s_r)
        large = ((direct.sum(1)[:, None] + (1.0 - direct) @ rejected.T) / n).ravel()
        gain = q_l - q_s
        quality = q_s.mean() + (direct @ gain / n)[:, None] + ((1.0 - direct) * gain) @ rejected.T / n
        q_large = q_l.mean()
        drop = ((q_large - quality) / max(abs(q_large), 1e-12)).ravel()
        small = np.repeat(1.0 - direct.mean(1), len(v_grid))
        keep = _pareto(large, small, drop)
        ri, vi = np.unravel_index(keep, (len(r_grid), len(v_grid)))
        return cls(r_grid[ri], v_grid[vi], large[keep], small[keep], drop[keep], len(s_r))

    def _pair(self, i: int) -> tuple[float, float]:
        return float(self.route_thresholds[i]), float(self.verify_thresholds[i])

    def thresholds_for_max_quality_drop(self, max_drop: float) -> tuple[float, float]:
        """(route, verify) thresholds with the fewest large calls whose drop is <= ``max_drop`` (else the safest)."""
        ok = np.nonzero(self.quality_drop <= max_drop + 1e-12)[0]
        return self._pair(int(ok[0]) if len(ok) else int(np.argmin(self.quality_drop)))

    def thresholds_for_large_share(self, share: float) -> tuple[float, float]:
        """The lowest-drop pair sending at most ``share`` of calls to the large model (else the cheapest)."""
        ok = np.nonzero(self.large_share <= share + 1e-12)[0]
        return self._pair(int(ok[-1]) if len(ok) else 0)

    def thresholds_for_route_threshold(self, threshold: float, route_calibration) -> tuple[float, float]:
        """The pair that reaches the quality routing reaches at ``threshold``, at the cascade's lowest cost.

        ``route_calibration`` is the router's :class:`~hybrid_router.core.calibration.Calibration`.
        """
        return self.thresholds_for_max_quality_drop(route_calibration.quality_drop_at(threshold))

    def to_dict(self) -> dict:
        """JSON-able form (stored in router.json)."""
        return {
            "route_thresholds": [round(float(x), 7) for x in self.route_thresholds],
            "verify_thresholds": [round(float(x), 7) for x in self.verify_thresholds],
            "large_share": [round(float(x), 6) for x in self.large_share],
            "small_share": [round(float(x), 6) for x in self.small_share],
            "quality_drop": [round(float(x), 6) for x in self.quality_drop],
            "n_queries": self.n_queries,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "CascadeCalibration":
        """Inverse of :meth:`to_dict`; ValueError for a malformed table."""
        keys = ("route_thresholds", "verify_thresholds", "large_share", "small_share", "quality_drop")
        arrays = [np.asarray(d[k], dtype=np.float64) for k in keys]
        if not arrays[0].ndim == 1 or len(arrays[0]) == 0 or any(a.shape != arrays[0].shape for a in arrays):
            raise ValueError("cascade calibration arrays are empty or of different lengths")
        if not all(np.isfinite(a).all() for a in arrays):
            raise ValueError("cascade calibration has non-finite values")
        return cls(*arrays, n_queries=int(d.get("n_queries", 0)))
