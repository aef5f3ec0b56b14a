"""The Hybrid LLM paper's three label modes, and its rule for choosing the relaxation t.

For a query with sampled small-model scores ``s_1..s_a`` and large-model scores ``l_1..l_b``:

* ``det``:   y = 1[mean(s) >= mean(l)]  (one answer per model: y = 1[s >= l])
* ``prob``:  y = P[s >= l], the share of the a*b sample pairs with ``s_i >= l_j``.
  With metric ``pairwise_prob`` (the score already *is* P[judge prefers small]), y = mean(s).
* ``trans``: y = P[s >= l - t*], where t* maximises the mean pairwise label difference
  ``mean_{i,j} |y_i(t) - y_j(t)|`` over a grid (the paper's rule: the most informative labels).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from .data_io import RoutingData

LabelMode = Literal["det", "prob", "trans"]
LABEL_MODES: tuple[str, ...] = ("det", "prob", "trans")


def _pair_probability(small: np.ndarray, large: np.ndarray, t: float) -> float:
    return float((small[:, None] >= large[None, :] - t).mean())


def probabilistic_labels(data: RoutingData, t: float = 0.0) -> np.ndarray:
    """y_i(t) = P[s >= l - t] over all sample pairs of query i."""
    if data.metric == "pairwise_prob" and t == 0.0:
        return np.clip(data.mean_small(), 0.0, 1.0)
    return np.array([_pair_probability(s, l, t) for s, l in zip(data.small_scores, data.large_scores)])


def deterministic_labels(data: RoutingData) -> np.ndarray:
    """y_i = 1[mean small score >= mean large score]."""
    return (data.mean_small() >= data.mean_large()).astype(np.float64)


def mean_pairwise_difference(y: np.ndarray) -> float:
    """mean over all ordered pairs (i, j) of |y_i - y_j|, in O(n log n)."""
    y = np.sort(np.asarray(y, dtype=np.float64))
    n = len(y)
    if n < 2:
        return 0.0
    weights = 2 * np.arange(n) - n + 1
    return float(2 * (weights * y).sum() / (n * n))


def relaxation_grid(data: RoutingData, size: int = 101) -> np.ndarray:
    """Candidate values of t: from 0 to the largest gap ``l - s`` seen in the data."""
    gaps = np.concatenate([(l[None, :] - s[:, None]).ravel() for s, l in zip(data.small_scores, data.large_scores)])
    top = float(max(gaps.max(), 0.0))
    return np.linspace(0.0, top, size) if top > 0 else np.zeros(1)


def find_relaxation(data: RoutingData, grid: np.ndarray | None = None) -> float:
    """The paper's t*: the grid value whose labels have the largest mean pairwise difference (ties: smallest t)."""
    grid = relaxation_grid(data) if grid is None else np.asarray(grid, dtype=np.float64)
    values = [
        mean_pairwise_difference(
            np.array([_pair_probability(s, l, float(t)) for s, l in zip(data.small_scores, data.large_scores)])
        )
        for t in grid
    ]
    return float(grid[int(np.argmax(values))])


def make_labels(data: RoutingData, mode: str, *, t: float | None = None) -> tuple[np.ndarray, float]:
    """Labels for ``mode`` and the relaxation used (0 for det/prob; t* or the given ``t`` for trans)."""
    if mode == "det":
        return deterministic_labels(data), 0.0
    if mode == "prob":
        return probabilistic_labels(data), 0.0
    if mode == "trans":
        t_used = find_relaxation(data) if t is None else float(t)
        if t_used < 0 or not np.isfinite(t_used):
            raise ValueError(f"relaxation t must be a finite number >= 0, got {t!r}")
        return np.array([_pair_probability(s, l, t_used) for s, l in zip(data.small_scores, data.large_scores)]), t_used
    raise ValueError(f"unknown label mode {mode!r}; choose one of {', '.join(LABEL_MODES)}")
