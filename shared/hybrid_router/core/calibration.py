"""Calibration: map a target large-call share or a maximum quality drop to a quality threshold.

Built on held-out labelled data (router scores plus both models' quality per query) and stored in the router
artifact, so ``route(large_share=0.3)`` or ``route(max_quality_drop=0.01)`` resolve at call time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Calibration:
    """For ascending thresholds: the share of calls sent large and the relative quality drop vs always-large."""

    thresholds: np.ndarray
    large_share: np.ndarray
    quality_drop: np.ndarray
    n_queries: int

    @classmethod
    def fit(cls, scores: np.ndarray, small_q: np.ndarray, large_q: np.ndarray, grid_size: int = 401) -> "Calibration":
        """Tabulate share and drop at thresholds 0, 1 and the score quantiles in between."""
        scores, small_q, large_q = (np.asarray(a, dtype=np.float64) for a in (scores, small_q, large_q))
        if len(scores) == 0:
            raise ValueError("calibration needs at least one labelled query")
        inner = np.quantile(scores, np.linspace(0, 1, grid_size))
        thresholds = np.unique(np.clip(np.concatenate([[0.0], inner, np.nextafter(inner, 2.0), [1.0]]), 0.0, 1.0))
        to_large = scores[None, :] < thresholds[:, None]
        routed = np.where(to_large, large_q[None, :], small_q[None, :]).mean(axis=1)
        q_large = large_q.mean()
        drop = (q_large - routed) / max(abs(q_large), 1e-12)
        return cls(thresholds, to_large.mean(axis=1), drop, len(scores))

    def threshold_for_large_share(self, share: float) -> float:
        """The smallest threshold that sends at least ``share`` of calls to the large model."""
        hits = np.nonzero(self.large_share >= share - 1e-12)[0]
        return float(self.thresholds[hits[0]] if len(hits) else self.thresholds[-1])

    def threshold_for_max_quality_drop(self, max_drop: float) -> float:
        """The threshold with the highest cost advantage (fewest large calls) whose drop is <= ``max_drop``."""
        ok = np.nonzero(self.quality_drop <= max_drop + 1e-12)[0]
        if not len(ok):
            return float(self.thresholds[-1])
        return float(self.thresholds[ok[np.argmin(self.large_share[ok])]])

    def quality_drop_at(self, threshold: float) -> float:
        """The calibrated quality drop of routing at ``threshold`` (the table's row at or below it)."""
        row = int(np.searchsorted(self.thresholds, threshold, side="right")) - 1
        return float(self.quality_drop[max(row, 0)])

    def to_dict(self) -> dict:
        """JSON-able form (stored in router.json)."""
        return {
            "thresholds": [round(float(x), 7) for x in self.thresholds],
            "large_share": [round(float(x), 6) for x in self.large_share],
            "quality_drop": [round(float(x), 6) for x in self.quality_drop],
            "n_queries": self.n_queries,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        """Inverse of :meth:`to_dict`."""
        arrays = [np.asarray(d[k], dtype=np.float64) for k in ("thresholds", "large_share", "quality_drop")]
        if not (len(arrays[0]) == len(arrays[1]) == len(arrays[2]) > 0):
            raise ValueError("calibration table arrays are empty or of different lengths")
        return cls(*arrays, n_queries=int(d.get("n_queries", 0)))
