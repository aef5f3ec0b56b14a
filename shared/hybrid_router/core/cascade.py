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

Certified (``fit(..., delta=...)``, what ``train`` does): choosing the cheapest of thousands of pairs on the rows
that measure them is optimistic on new queries (a winner's curse). So the rows are split in two: the frontier is
found on :data:`PATH_SHARE` of them (the *path*, ordered from all-small to all-large), and the rest test it by
Learn-then-Test
(:mod:`hybrid_router.core.certify`): ``max_quality_drop=d`` takes the cheapest path pair whose drop is certified
<= d, ``large_share=c`` the best-quality pair whose large share is certified <= c, each with probability >= 1 -
delta on new queries from the same distribution. The table's measured shares and drops are those of the testing
rows. ``quality_threshold=t`` stays a measured mapping (it is a score, not a promise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .calibration import Resolved, bounds_to_dict, read_table
from .certify import Certificate, drop_and_share_bounds, walk_from

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


#: Share of the rows that choose the certified cascade's path; the rest certify it. The path needs only a rough
#: frontier, the bounds need rows: on GSM8K with answers (660 calibration rows, 20 splits) 0.3 sent 63% of calls
#: large at a certified 5% drop, 0.5 71% (benchmarks/guarantees.py), both within delta.
PATH_SHARE = 0.3

#: The pair that sends every call to the large model at once, on any data (route threshold above every score).
ALL_LARGE_PAIR = (float(np.nextafter(1.0, 2.0)), 0.0)


def _outcomes(s_r, s_v, q_s, q_l, r_grid, v_grid):
    """(large share, small share, drop) of every (route, verify) grid pair, flattened route-major."""
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
    return large, small, drop


@dataclass
class CascadeCalibration:
    """The cascade's frontier: for each kept pair (ascending large share), its thresholds, shares and drop.

    A certified table also has the walked bounds ``drop_bound`` (from the all-large end) and ``share_bound`` (from
    the all-small end) and its :class:`~hybrid_router.core.certify.Certificate`.
    """

    route_thresholds: np.ndarray
    verify_thresholds: np.ndarray
    large_share: np.ndarray
    small_share: np.ndarray
    quality_drop: np.ndarray
    n_queries: int
    drop_bound: np.ndarray | None = None
    share_bound: np.ndarray | None = None
    certificate: Certificate | None = None

    @classmethod
    def fit(
        cls,
        route_scores: np.ndarray,
        verify_scores: np.ndarray,
        small_q: np.ndarray,
        large_q: np.ndarray,
        grid_size: int = GRID_SIZE,
        *,
        delta: float | None = None,
        seed: int = 0,
    ) -> "CascadeCalibration":
        """The Pareto frontier over a quantile grid of both scores; with ``delta``, found on :data:`PATH_SHARE` of
        the rows and certified on the rest (see the module docstring)."""
        arrays = [np.asarray(a, dtype=np.float64) for a in (route_scores, verify_scores, small_q, large_q)]
        s_r, s_v, q_s, q_l = arrays
        if len(s_r) == 0 or any(len(a) != len(s_r) for a in arrays):
            raise ValueError("cascade calibration needs equal-length, non-empty scores and qualities")
        r_grid, v_grid = _grid(s_r, grid_size), _grid(s_v, grid_size)
        if delta is None or len(s_r) < 4:
            large, small, drop = _outcomes(s_r, s_v, q_s, q_l, r_grid, v_grid)
            keep = _pareto(large, small, drop)
            ri, vi = np.unravel_index(keep, (len(r_grid), len(v_grid)))
            return cls(r_grid[ri], v_grid[vi], large[keep], small[keep], drop[keep], len(s_r))
        order = np.random.default_rng(seed).permutation(len(s_r))
        cut = int(round(len(order) * PATH_SHARE))
        pick, test = order[:cut], order[cut:]
        large, small, drop = _outcomes(*(a[pick] for a in arrays), r_grid, v_grid)
        keep = _pareto(large, small, drop)
        ri, vi = np.unravel_index(keep, (len(r_grid), len(v_grid)))
        pairs = [(0.0, 0.0)] + [(float(r), float(v)) for r, v in zip(r_grid[ri], v_grid[vi])] + [ALL_LARGE_PAIR]
        pairs = list(dict.fromkeys(pairs))  # the path, all-small first, all-large last
        route_t, verify_t = (np.asarray(x) for x in zip(*pairs))
        direct = s_r[test][None, :] < route_t[:, None]
        to_large = direct | (s_v[test][None, :] < verify_t[:, None])
        always = route_t > 1.0
        drop_ucb, share_ucb, certificate = drop_and_share_bounds(
            to_large,
            q_s[test],
            q_l[test],
            delta,
            always_large=always,
            never_large=(route_t <= 0) & (verify_t <= 0),
            seed=seed,
        )
        q_large = q_l[test].mean()
        measured = np.where(to_large, q_l[test][None, :], q_s[test][None, :]).mean(axis=1)
        return cls(
            route_t,
            verify_t,
            to_large.mean(axis=1),
            1.0 - direct.mean(axis=1),
            (q_large - measured) / max(abs(q_large), 1e-12),
            len(test),
            walk_from(drop_ucb, "end"),
            walk_from(share_ucb, "start"),
            certificate,
        )

    @property
    def certified(self) -> bool:
        """True when the table carries bounds (its targets are promises, not measurements)."""
        return self.drop_bound is not None

    def _pair(self, i: int) -> tuple[float, float]:
        return float(self.route_thresholds[i]), float(self.verify_thresholds[i])

    def _resolved(self, i: int, certified: bool, smallest: float | None = None) -> tuple[tuple[float, float], Resolved]:
        found = Resolved(
            float(self.route_thresholds[i]),
            certified,
            float(self.quality_drop[i]),
            float(self.large_share[i]),
            smallest,
        )
        return self._pair(i), found

    def resolve_max_quality_drop(self, max_drop: float) -> tuple[tuple[float, float], Resolved]:
        """(route, verify) with the fewest large calls whose drop is certified (else measured) <= ``max_drop``; else
        the safest pair (all large when certified)."""
        bound = self.quality_drop if self.drop_bound is None else self.drop_bound
        ok = np.nonzero(bound <= max_drop + 1e-12)[0]
        saving = np.nonzero(self.large_share < 1.0)[0]
        smallest = float(np.min(bound[saving])) if self.certified and len(saving) else None
        if not len(ok):
            return self._resolved(int(np.argmin(bound)), False, smallest)
        i = int(ok[np.argmin(self.large_share[ok])])
        return self._resolved(i, bool(self.large_share[i] < 1.0), smallest)

    def resolve_large_share(self, share: float) -> tuple[tuple[float, float], Resolved]:
        """The lowest-drop pair whose large share is certified (else measured) <= ``share``; else the cheapest."""
        bound = self.large_share if self.share_bound is None else self.share_bound
        ok = np.nonzero(bound <= share + 1e-12)[0]
        return self._resolved(int(ok[-1]) if len(ok) else 0, self.certified)

    def thresholds_for_max_quality_drop(self, max_drop: float) -> tuple[float, float]:
        """(route, verify) thresholds for a maximum quality drop (see :meth:`resolve_max_quality_drop`)."""
        return self.resolve_max_quality_drop(max_drop)[0]

    def thresholds_for_large_share(self, share: float) -> tuple[float, float]:
        """(route, verify) thresholds for a large-call budget (see :meth:`resolve_large_share`)."""
        return self.resolve_large_share(share)[0]

    def thresholds_for_route_threshold(self, threshold: float, route_calibration) -> tuple[float, float]:
        """The pair that reaches the quality routing reaches at ``threshold``, at the cascade's lowest cost.

        ``route_calibration`` is the router's :class:`~hybrid_router.core.calibration.Calibration`; both drops are
        the measured ones (a threshold is a score, not a promise).
        """
        target = route_calibration.quality_drop_at(threshold)
        ok = np.nonzero(self.quality_drop <= target + 1e-12)[0]
        return self._pair(int(ok[np.argmin(self.large_share[ok])]) if len(ok) else int(np.argmin(self.quality_drop)))

    def to_dict(self) -> dict:
        """JSON-able form (stored in router.json)."""
        out = {
            "route_thresholds": [round(float(x), 7) for x in self.route_thresholds],
            "verify_thresholds": [round(float(x), 7) for x in self.verify_thresholds],
            "large_share": [round(float(x), 6) for x in self.large_share],
            "small_share": [round(float(x), 6) for x in self.small_share],
            "quality_drop": [round(float(x), 6) for x in self.quality_drop],
            "n_queries": self.n_queries,
        }
        return out | bounds_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CascadeCalibration":
        """Inverse of :meth:`to_dict`; ValueError for a malformed table."""
        keys = ["route_thresholds", "verify_thresholds", "large_share", "small_share", "quality_drop"]
        arrays, bounds = read_table(d, keys, "cascade calibration")
        return cls(*arrays, int(d.get("n_queries", 0)), *bounds)
