"""Training the answer verifier (:class:`hybrid_router.core.verifier.AnswerVerifier`).

The input blocks and the L2 strength are chosen by 5-fold cross-validation on the training data only: the
cheapest candidate (fewest encoder forwards, then fewest blocks) within :data:`SELECTION_TOLERANCE` of the best
mean out-of-fold ranking quality wins (an absolute tolerance, as encoder-depth selection uses). When the router's
out-of-fold scores are given, the candidates include the router's score as an input (stacking) and
:data:`ROUTE_ONLY`, the router's score alone: a verifier that ranks exactly as the router. ``train`` then keeps
the chosen verifier only when it beats route-only on rows the selection never saw by more than noise
(:func:`beats_route_only`); otherwise the cascade degrades to routing. Below
:data:`~hybrid_router.train.recipes.MIN_CV_QUERIES` training queries the fixed :data:`FALLBACK` is used: too few
to choose anything by CV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..core.head import FEATURE_CLIP
from ..core.verifier import EMBEDDING_INPUTS, AnswerVerifier, route_score_block
from .evaluation import apgr_resampled
from .recipes import MIN_CV_QUERIES, _folds, _lbfgs, feature_stats, ranking_quality


@dataclass(frozen=True)
class VerifierCandidate:
    """One configuration of the search: input blocks and one L2 strength for all of them."""

    inputs: tuple[str, ...]
    decay: float

    @property
    def name(self) -> str:
        return f"{'+'.join(self.inputs)}(l2={self.decay:g})"

    @property
    def cost(self) -> tuple[int, int]:
        """(encoder forwards beyond the router's, blocks): what a tie is broken on."""
        return (int("answer" in self.inputs), len(self.inputs))


#: The search space, cheapest first; candidates whose blocks are missing (no router scores) are skipped.
CANDIDATES = tuple(
    VerifierCandidate(inputs, decay)
    for inputs in (
        ("answer_features",),
        ("answer_features", "route_score"),
        ("answer_features", "query"),
        ("answer_features", "query", "route_score"),
        ("answer_features", "query", "query_features"),
        ("answer_features", "answer", "route_score"),
        ("answer_features", "query", "answer"),
    )
    for decay in (1e-2, 1e-3)
)
#: The router's score alone: ranks as the router does (what a verifier must beat to be kept).
ROUTE_ONLY = VerifierCandidate(("route_score",), 1e-2)
FALLBACK = VerifierCandidate(("answer_features", "query"), 1e-2)
#: A cheaper candidate within this much of the best mean out-of-fold ranking quality is chosen.
SELECTION_TOLERANCE = 0.005
#: The verifier is kept when its gain over route-only on held-out rows has at least this probability of being > 0
#: (paired bootstrap over the rows).
KEEP_CONFIDENCE = 0.9
BOOTSTRAP_SAMPLES = 1000


@dataclass
class VerifierInputs:
    """Everything a verifier may read for a set of (query, answer) pairs; feature blocks raw (unstandardised)."""

    queries: list[str]
    answers: list[str]
    blocks: dict[str, np.ndarray]

    def subset(self, index: np.ndarray) -> "VerifierInputs":
        return VerifierInputs(
            [self.queries[i] for i in index],
            [self.answers[i] for i in index],
            {k: v[index] for k, v in self.blocks.items()},
        )


def verifier_inputs(
    queries: Sequence[str],
    answers: Sequence[str],
    query_embeddings: np.ndarray,
    answer_embeddings: np.ndarray | None,
    route_scores: np.ndarray | None = None,
) -> VerifierInputs:
    """Compute the feature blocks once; the embeddings come from the router's encoder, ``route_scores`` (out of
    fold: each from a router not trained on that query) from its head."""
    probe = AnswerVerifier({"answer_features": np.zeros(1)}, 0.0, {"answer_features": (np.zeros(1), np.ones(1))})
    blocks = {
        "query": np.asarray(query_embeddings, dtype=np.float32),
        "answer_features": probe.features("answer_features", queries, answers),
        "query_features": probe.features("query_features", queries, answers),
    }
    if answer_embeddings is not None:
        blocks["answer"] = np.asarray(answer_embeddings, dtype=np.float32)
    if route_scores is not None:
        blocks["route_score"] = route_score_block(route_scores)
    return VerifierInputs(list(queries), list(answers), blocks)


def fit_candidate(cand: VerifierCandidate, data: VerifierInputs, labels: np.ndarray, seed: int) -> AnswerVerifier:
    """Fit one configuration by L-BFGS on (soft) labels."""
    torch.manual_seed(seed)
    xs, stats = [], {}
    for block in cand.inputs:
        x = data.blocks[block]
        if block not in EMBEDDING_INPUTS:
            mean, std = feature_stats(x)
            stats[block] = (mean, std)
            x = np.clip((x - mean) / std, -FEATURE_CLIP, FEATURE_CLIP)
        xs.append(torch.as_tensor(x, dtype=torch.float32))
    y = torch.as_tensor(labels, dtype=torch.float32)
    weights, bias = _lbfgs(xs, [cand.decay] * len(xs), y, 300)
    return AnswerVerifier(dict(zip(cand.inputs, weights)), bias, stats, info={"chosen": cand.name})


def predict(verifier: AnswerVerifier, data: VerifierInputs) -> np.ndarray:
    """Scores of a fitted verifier on precomputed inputs."""
    route = data.blocks.get("route_score")
    return verifier.predict(
        data.queries,
        data.answers,
        data.blocks.get("query"),
        data.blocks.get("answer"),
        None if route is None else 1.0 / (1.0 + np.exp(-route[:, 0])),
    )


@dataclass
class VerifierSelection:
    """The chosen configuration and the mean out-of-fold ranking quality of every candidate; after
    :func:`beats_route_only`, whether it was kept over route-only and why."""

    chosen: VerifierCandidate
    scores: dict[str, float]
    kept: bool | None = None
    why: str = ""

    def to_dict(self) -> dict:
        out = {"chosen": self.chosen.name, "cv_ranking_quality": {k: round(v, 4) for k, v in self.scores.items()}}
        if self.kept is not None:
            out.update(kept_over_route_only=self.kept, why=self.why)
        return out


def select_verifier(
    data: VerifierInputs,
    labels: np.ndarray,
    seed: int = 0,
    *,
    candidates: Sequence[VerifierCandidate] = CANDIDATES,
    n_folds: int = 5,
    min_queries: int = MIN_CV_QUERIES,
) -> VerifierSelection:
    """Cross-validate ``candidates`` (and :data:`ROUTE_ONLY` when the data has router scores) on the training
    data; the cheapest within :data:`SELECTION_TOLERANCE` of the best mean."""
    labels = np.asarray(labels, dtype=np.float64)
    candidates = [c for c in (ROUTE_ONLY, *candidates) if all(b in data.blocks for b in c.inputs)]
    n = len(labels)
    if n < max(min_queries, 2 * n_folds) or np.ptp(labels) == 0 or not candidates:
        return VerifierSelection(FALLBACK, {})
    folds = _folds(n, n_folds, seed)
    fold_scores = np.zeros((len(candidates), n_folds))
    for f, test in enumerate(folds):
        train = np.setdiff1d(np.arange(n), test)
        fit_data, test_data = data.subset(train), data.subset(test)
        for c, cand in enumerate(candidates):
            verifier = fit_candidate(cand, fit_data, labels[train], seed)
            fold_scores[c, f] = ranking_quality(predict(verifier, test_data), labels[test])
    means = fold_scores.mean(axis=1)
    best = float(np.max(means))
    chosen = min(
        (c for c in range(len(candidates)) if means[c] >= best - SELECTION_TOLERANCE),
        key=lambda c: (candidates[c].cost, -means[c]),
    )
    return VerifierSelection(candidates[chosen], {c.name: float(m) for c, m in zip(candidates, means)})


def beats_route_only(
    verifier_scores: np.ndarray,
    route_scores: np.ndarray,
    small_q: np.ndarray,
    large_q: np.ndarray,
    seed: int = 0,
    confidence: float = KEEP_CONFIDENCE,
) -> tuple[bool, str]:
    """Does the verifier rank held-out queries better than the router alone, by more than noise?

    A paired bootstrap over the rows of the APGR difference (verifier minus router): kept when the difference is
    positive in at least ``confidence`` of the resamples.
    """
    rng = np.random.default_rng(seed)
    n = len(route_scores)
    idx = rng.integers(0, n, size=(BOOTSTRAP_SAMPLES, n))
    q_s, q_l = np.asarray(small_q, np.float64), np.asarray(large_q, np.float64)
    diff = apgr_resampled(np.asarray(verifier_scores)[idx], q_s[idx], q_l[idx]) - apgr_resampled(
        np.asarray(route_scores)[idx], q_s[idx], q_l[idx]
    )
    share = float(np.mean(diff > 0))
    gain = float(np.median(diff))
    if share >= confidence:
        return True, f"beats route-only on {n} held-out rows: APGR gain {gain:+.3f} (> 0 in {share:.0%} of resamples)"
    return False, (
        f"not better than route-only by more than noise on {n} held-out rows: APGR gain {gain:+.3f} (> 0 in "
        f"{share:.0%} of resamples, needs {confidence:.0%}): the cascade degrades to routing"
    )
