"""Calibration: map a target large-call share or a maximum quality drop to a quality threshold.

Built on held-out labelled data (router scores plus both models' quality per query) and stored in the router
artifact, so ``route(large_share=0.3)`` or ``route(max_quality_drop=0.01)`` resolve at call time.

A certified table (:mod:`hybrid_router.core.certify`) also holds, per threshold, upper confidence bounds of the
drop and of the large share, walked in a fixed order; then ``max_quality_drop=d`` picks the cheapest threshold
whose drop is certified <= d (with probability >= 1 - delta on new queries from the same distribution), and
``large_share=c`` the best-quality threshold whose share is certified <= c. A table without bounds (a router saved
before 0.3) resolves on the measured values, as it always did, and says that it promises nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .certify import Certificate, drop_and_share_bounds, walk_from

#: A threshold of 1 sends every call to the large model (see ``HybridRouter.decide``): the safe end of a table.
ALL_LARGE = 1.0


@dataclass(frozen=True)
class Resolved:
    """A threshold chosen for a target, and whether the table could certify that target with any saving."""

    threshold: float
    certified: bool
    #: the measured drop and large share of the chosen threshold on the calibration rows
    quality_drop: float
    large_share: float
    #: the smallest target certified with some calls answered small (None: uncertified table, or none at all)
    smallest_certified: float | None = None


@dataclass
class Calibration:
    """For ascending thresholds: the share of calls sent large and the relative quality drop vs always-large.

    ``drop_bound`` and ``share_bound`` (None for an uncertified table) are the fixed-sequence walked upper bounds
    of :func:`hybrid_router.core.certify.walk_from`: the drop walked down from threshold 1 (all large), the share
    up from threshold 0 (all small).
    """

    thresholds: np.ndarray
    large_share: np.ndarray
    quality_drop: np.ndarray
    n_queries: int
    drop_bound: np.ndarray | None = None
    share_bound: np.ndarray | None = None
    certificate: Certificate | None = None

    @classmethod
    def fit(
        cls,
        scores: np.ndarray,
        small_q: np.ndarray,
        large_q: np.ndarray,
        grid_size: int = 401,
        *,
        delta: float | None = None,
        seed: int = 0,
    ) -> "Calibration":
        """Tabulate share and drop at thresholds 0, 1 and the score quantiles in between; with ``delta``, certify."""
        scores, small_q, large_q = (np.asarray(a, dtype=np.float64) for a in (scores, small_q, large_q))
        if len(scores) == 0:
            raise ValueError("calibration needs at least one labelled query")
        inner = np.quantile(scores, np.linspace(0, 1, grid_size))
        grid = np.clip(np.concatenate([[0.0], inner, np.nextafter(inner, 2.0), [ALL_LARGE]]), 0.0, 1.0)
        thresholds = np.unique(grid)
        to_large = (scores[None, :] < thresholds[:, None]) | (thresholds[:, None] >= ALL_LARGE)
        routed = np.where(to_large, large_q[None, :], small_q[None, :]).mean(axis=1)
        q_large = large_q.mean()
        drop = (q_large - routed) / max(abs(q_large), 1e-12)
        table = cls(thresholds, to_large.mean(axis=1), drop, len(scores))
        if delta is not None:
            drop_ucb, share_ucb, table.certificate = drop_and_share_bounds(
                to_large,
                small_q,
                large_q,
                delta,
                always_large=thresholds >= ALL_LARGE,
                never_large=thresholds <= 0.0,
                seed=seed,
            )
            table.drop_bound, table.share_bound = walk_from(drop_ucb, "end"), walk_from(share_ucb, "start")
        return table

    @property
    def certified(self) -> bool:
        """True when the table carries bounds (its targets are promises, not measurements)."""
        return self.drop_bound is not None

    def _resolved(self, row: int, certified: bool, smallest: float | None) -> Resolved:
        return Resolved(
            float(self.thresholds[row]),
            certified,
            float(self.quality_drop[row]),
            float(self.large_share[row]),
            smallest,
        )

    def resolve_max_quality_drop(self, max_drop: float) -> Resolved:
        """The cheapest threshold whose drop is certified (else measured) <= ``max_drop``; else all large."""
        bound = self.quality_drop if self.drop_bound is None else self.drop_bound
        ok = np.nonzero(bound <= max_drop + 1e-12)[0]
        saving = np.nonzero(self.large_share < 1.0)[0]
        smallest = float(np.min(bound[saving])) if self.certified and len(saving) else None
        if not len(ok):
            return self._resolved(len(self.thresholds) - 1, False, smallest)
        row = int(ok[np.argmin(self.large_share[ok])])
        return self._resolved(row, bool(self.large_share[row] < 1.0), smallest)

    def resolve_large_share(self, share: float) -> Resolved:
        """With bounds: the highest threshold whose large share is certified <= ``share`` (a budget). Without: the
        smallest threshold that sends at least ``share`` of the calibration calls large (as before 0.3)."""
        if self.share_bound is None:
            hits = np.nonzero(self.large_share >= share - 1e-12)[0]
            return self._resolved(int(hits[0]) if len(hits) else len(self.thresholds) - 1, False, None)
        ok = np.nonzero(self.share_bound <= share + 1e-12)[0]
        return self._resolved(int(ok[-1]) if len(ok) else 0, True, None)

    def threshold_for_large_share(self, share: float) -> float:
        """The threshold for a large-call share (see :meth:`resolve_large_share`)."""
        return self.resolve_large_share(share).threshold

    def threshold_for_max_quality_drop(self, max_drop: float) -> float:
        """The threshold for a maximum quality drop (see :meth:`resolve_max_quality_drop`)."""
        return self.resolve_max_quality_drop(max_drop).threshold

    def quality_drop_at(self, threshold: float) -> float:
        """The calibrated quality drop of routing at ``threshold`` (the table's row at or below it)."""
        row = int(np.searchsorted(self.thresholds, threshold, side="right")) - 1
        return float(self.quality_drop[max(row, 0)])

    def to_dict(self) -> dict:
        """JSON-able form (stored in router.json)."""
        out = {
            "thresholds": [round(float(x), 7) for x in self.thresholds],
            "large_share": [round(float(x), 6) for x in self.large_share],
            "quality_drop": [round(float(x), 6) for x in self.quality_drop],
            "n_queries": self.n_queries,
        }
        return out | bounds_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        """Inverse of :meth:`to_dict`."""
        arrays, bounds = read_table(d, ["thresholds", "large_share", "quality_drop"], "calibration table")
        return cls(*arrays, int(d.get("n_queries", 0)), *bounds)


def ceil6(x: float) -> float:
    """A bound rounded up at 6 decimals (never below the computed one); inf (nothing certified) as 1e9."""
    return float(np.ceil(x * 1e6) / 1e6) if np.isfinite(x) else 1e9


def bounds_to_dict(table) -> dict:
    """The JSON-able bounds and certificate of a certified table (route or cascade); {} for an uncertified one."""
    if not table.certified:
        return {}
    return {
        "drop_bound": [ceil6(x) for x in table.drop_bound],
        "share_bound": [ceil6(x) for x in table.share_bound],
        "certificate": table.certificate.to_dict(),
    }


def read_table(d: dict, keys: list[str], what: str) -> tuple[list[np.ndarray], tuple]:
    """A stored table's ``keys`` arrays, and (drop_bound, share_bound, certificate) or () when uncertified; a
    ValueError naming ``what`` for a malformed one."""
    certified = d.get("drop_bound") is not None
    arrays = [np.asarray(d[k], dtype=np.float64) for k in keys + (["drop_bound", "share_bound"] if certified else [])]
    if not arrays[0].ndim == 1 or len(arrays[0]) == 0 or any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"{what} arrays are empty or of different lengths")
    if not all(np.isfinite(a).all() for a in arrays):
        raise ValueError(f"{what} has non-finite values")
    if not certified:
        return arrays, ()
    return arrays[: len(keys)], (*arrays[len(keys) :], Certificate.from_dict(d["certificate"]))
