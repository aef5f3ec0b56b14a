"""Training the answer verifier (:class:`hybrid_router.core.verifier.AnswerVerifier`).

The input blocks and the L2 strength are chosen by 5-fold cross-validation on the training data only: the
cheapest candidate (fewest encoder forwards, then fewest blocks) within one standard error of the best mean
out-of-fold ranking quality wins. Below :data:`~hybrid_router.train.recipes.MIN_CV_QUERIES` training queries the
fixed :data:`FALLBACK` (query embedding + answer features) is used: too few to choose anything by CV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..core.head import FEATURE_CLIP
from ..core.verifier import EMBEDDING_INPUTS, AnswerVerifier
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


#: The search space, cheapest first.
CANDIDATES = tuple(
    VerifierCandidate(inputs, decay)
    for inputs in (
        ("answer_features",),
        ("answer_features", "query"),
        ("answer_features", "query", "query_features"),
        ("answer_features", "answer"),
        ("answer_features", "query", "answer"),
    )
    for decay in (1e-2, 1e-3)
)
FALLBACK = VerifierCandidate(("answer_features", "query"), 1e-2)


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
) -> VerifierInputs:
    """Compute the feature blocks once; the embeddings come from the router's encoder."""
    probe = AnswerVerifier({"answer_features": np.zeros(1)}, 0.0, {"answer_features": (np.zeros(1), np.ones(1))})
    blocks = {
        "query": np.asarray(query_embeddings, dtype=np.float32),
        "answer_features": probe.features("answer_features", queries, answers),
        "query_features": probe.features("query_features", queries, answers),
    }
    if answer_embeddings is not None:
        blocks["answer"] = np.asarray(answer_embeddings, dtype=np.float32)
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
    return verifier.predict(data.queries, data.answers, data.blocks.get("query"), data.blocks.get("answer"))


@dataclass
class VerifierSelection:
    """The chosen configuration and the mean out-of-fold ranking quality of every candidate."""

    chosen: VerifierCandidate
    scores: dict[str, float]

    def to_dict(self) -> dict:
        return {"chosen": self.chosen.name, "cv_ranking_quality": {k: round(v, 4) for k, v in self.scores.items()}}


def select_verifier(
    data: VerifierInputs,
    labels: np.ndarray,
    seed: int = 0,
    *,
    candidates: Sequence[VerifierCandidate] = CANDIDATES,
    n_folds: int = 5,
    min_queries: int = MIN_CV_QUERIES,
) -> VerifierSelection:
    """Cross-validate ``candidates`` on the training data; the cheapest within one standard error of the best."""
    labels = np.asarray(labels, dtype=np.float64)
    candidates = [c for c in candidates if all(b in data.blocks for b in c.inputs)]
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
    best = int(np.argmax(means))
    chosen = best
    for c in sorted(range(len(candidates)), key=lambda c: candidates[c].cost):
        diff = fold_scores[best] - fold_scores[c]
        if diff.mean() <= diff.std(ddof=1) / np.sqrt(n_folds):
            chosen = c
            break
    return VerifierSelection(candidates[chosen], {c.name: float(m) for c, m in zip(candidates, means)})
