"""The ``transfer`` recipe: one router for data pooled from several sources that still ranks a new source's queries.

Pooled over sources whose base rates differ (on the shipped sets the small model is good enough for 82% of MMLU
queries but 71% of GSM8K ones), a head learns *which source a query looks like*: numbers, a multiple-choice layout
or an ``Answer:`` suffix say "GSM8K" or "MMLU", and that alone moves the score. It helps on the training sources
and misleads everywhere else ("What is 2 + 2?" looks like GSM8K, so it scores below a request for a proof).

The recipe fits the head with **one free intercept per source** (source fixed effects): each source's base rate is
absorbed by its own intercept, so the embedding and feature weights are learned from differences *within* sources
only (a within estimator). At prediction time the source is unknown and the intercepts are replaced by their
average over the training queries. Optionally (``balance``) rows are weighted by ``n_source ** -balance`` so a large
source does not decide every weight. The configuration (embedding and/or features, L2 strength, balancing) is
chosen by leave-one-source-out cross-validation on the training data: train on all sources but one, score the
held-out source's queries, average the ranking quality over held-out sources.

On top of the chosen linear head the same cross-validation decides whether to blend in a kNN head on
**source-centred labels** (each label minus its source's mean plus the pooled mean: are the neighbours' results
better or worse than usual for their source?), which moves the score only where the neighbours differ from the
prior.

The result is a :class:`~hybrid_router.core.head.LinearHead`, or a :class:`~hybrid_router.core.head.BlendHead` of
one and a :class:`~hybrid_router.core.head.KnnHead` (existing head types: nothing new to load). The sources come from
the query ids (``gsm8k/12``: source ``gsm8k``, see :func:`query_sources`); with fewer than two sources the recipe is
the ``auto`` head search.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..core.features import query_features
from ..core.head import FEATURE_CLIP, BlendHead, KnnHead, LinearHead, RouterHead, logit
from .recipes import (
    MIN_CV_QUERIES,
    RecipeFit,
    _folds,
    _lbfgs,
    feature_stats,
    fit_selection,
    ranking_quality,
    select_head,
)

#: Sources with fewer queries than this are pooled into one ``"(other)"`` source.
MIN_SOURCE_QUERIES = 20
#: More distinct id prefixes than this are not sources (ids like ``user123/4``): the data is then one source.
MAX_SOURCES = 50
OTHER_SOURCE = "(other)"
#: L2 on the per-source intercepts: tiny, only to make the (intercept + offsets) parametrisation unique.
SOURCE_DECAY = 1e-6


def query_sources(
    query_ids: Sequence[str], *, min_queries: int = MIN_SOURCE_QUERIES, max_sources: int = MAX_SOURCES
) -> np.ndarray | None:
    """The source of each query: its id's prefix before the first ``/`` (``mmlu/17`` -> ``mmlu``).

    ``None`` (one source) unless every id has a prefix and there are 2 to ``max_sources`` distinct ones; sources
    with fewer than ``min_queries`` queries are pooled into ``"(other)"`` (``None`` unless two sources have enough).
    """
    if not query_ids or any("/" not in str(q) for q in query_ids):
        return None
    prefixes = np.array([str(q).split("/", 1)[0] for q in query_ids], dtype=object)
    names, counts = np.unique(prefixes, return_counts=True)
    if not 2 <= len(names) <= max_sources:
        return None
    small = set(names[counts < min_queries].tolist())
    if small:
        prefixes = np.array([OTHER_SOURCE if p in small else p for p in prefixes], dtype=object)
    return prefixes if len(names) - len(small) >= 2 else None


def fit_within_sources(
    embeddings: np.ndarray,
    texts: Sequence[str],
    labels: np.ndarray,
    sources: Sequence[str],
    seed: int = 0,
    *,
    embedding: bool = True,
    features: bool = True,
    emb_decay: float = 1e-2,
    feature_decay: float = 1e-2,
    balance: float = 0.0,
    steps: int = 300,
    feature_matrix: np.ndarray | None = None,
    clip: float = FEATURE_CLIP,
) -> LinearHead:
    """Logistic regression on the embedding and/or standardised query features plus one intercept per source.

    The returned head's bias is the training-query average of ``bias + source intercept``, so it scores a query of
    unknown source. Rows are weighted by ``n_source ** -balance`` (mean weight 1); ``balance=0``: unweighted.
    """
    torch.manual_seed(seed)
    names, codes = np.unique(np.asarray(list(sources), dtype=object).astype(str), return_inverse=True)
    counts = np.bincount(codes, minlength=len(names))
    blocks, decays = [], []
    if embedding:
        blocks.append(torch.as_tensor(embeddings, dtype=torch.float32))
        decays.append(emb_decay)
    mean = std = None
    if features:
        f = query_features(list(texts)) if feature_matrix is None else feature_matrix
        mean, std = feature_stats(f)
        blocks.append(torch.as_tensor(np.clip((f - mean) / std, -clip, clip), dtype=torch.float32))
        decays.append(feature_decay)
    if not blocks:
        raise ValueError("fit_within_sources needs the embedding, the features or both")
    if len(names) > 1:
        blocks.append(torch.as_tensor(np.eye(len(names), dtype=np.float32)[codes]))
        decays.append(SOURCE_DECAY)
    weight = None
    if balance and len(names) > 1:
        w = counts[codes].astype(np.float64) ** -balance
        weight = torch.as_tensor(w / w.mean(), dtype=torch.float32)
    weights, bias = _lbfgs(blocks, decays, torch.as_tensor(labels, dtype=torch.float32), steps, weight)
    if len(names) > 1:
        bias += float(counts @ weights[-1]) / len(codes)
    return LinearHead(
        weights[0] if embedding else None,
        weights[1 if embedding else 0] if features else None,
        bias,
        mean,
        std,
        clip=clip,
    )


#: The centred kNN part keeps at most this many training queries (float16 keys: 4.6 MB at 384 dimensions).
CENTRED_KNN_MAX_ITEMS = 6000
CENTRED_KNN_K = 100
#: Weights of the centred kNN part tried on top of the chosen linear head (0: none).
CENTRED_KNN_WEIGHTS = (0.5, 1.0)


def source_centred_labels(labels: np.ndarray, sources: Sequence[str]) -> tuple[np.ndarray, float]:
    """Labels minus their source's mean plus the pooled mean (clipped to [0, 1]), and the pooled mean: what is
    left of a label once its source's base rate is taken out."""
    labels = np.asarray(labels, dtype=np.float64)
    sources = np.asarray(list(sources), dtype=object).astype(str)
    prior = float(labels.mean())
    out = labels.copy()
    for name in np.unique(sources):
        mask = sources == name
        out[mask] += prior - labels[mask].mean()
    return np.clip(out, 0.0, 1.0), prior


def fit_centred_knn(
    embeddings: np.ndarray,
    labels: np.ndarray,
    sources: Sequence[str],
    seed: int = 0,
    *,
    k: int = CENTRED_KNN_K,
    max_items: int = CENTRED_KNN_MAX_ITEMS,
) -> KnnHead:
    """kNN label smoothing on source-centred labels: near a query, are the small model's results better or worse
    than usual *for their source*? Keeps at most ``max_items / n_sources`` queries of each source (a seeded sample),
    so a large source does not fill every neighbourhood."""
    centred, prior = source_centred_labels(labels, sources)
    sources = np.asarray(list(sources), dtype=object).astype(str)
    names = np.unique(sources)
    quota = max(max_items // len(names), 1)
    rng = np.random.default_rng(seed)
    idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(sources == n))[:quota] for n in names]))
    return KnnHead(embeddings[idx], centred[idx], k=k, prior=prior)


def blend_centred_knn(linear: RouterHead, knn: KnnHead, weight: float) -> BlendHead:
    """``sigmoid(logit(linear) + weight * (logit(knn) - logit(prior)))``: the kNN part moves the linear score by
    how far the neighbours' centred labels are from the prior (not at all where they are at the prior)."""
    return BlendHead([linear, knn], [1.0, weight], -weight * float(logit(np.array([knn.prior]))[0]))


@dataclass(frozen=True)
class TransferCandidate:
    """One configuration of the ``transfer`` search."""

    name: str
    embedding: bool = True
    features: bool = True
    emb_decay: float = 1e-2
    feature_decay: float = 1e-2
    balance: float = 0.0

    def fit(self, embeddings, texts, feats, labels, sources, seed) -> LinearHead:
        return fit_within_sources(
            embeddings,
            texts,
            labels,
            sources,
            seed,
            embedding=self.embedding,
            features=self.features,
            emb_decay=self.emb_decay,
            feature_decay=self.feature_decay,
            balance=self.balance,
            feature_matrix=feats,
        )


def transfer_candidates() -> list[TransferCandidate]:
    """The linear search space, simplest (most regularised) first."""
    out = [TransferCandidate("features(l2=0.01)", embedding=False)]
    out += [TransferCandidate(f"emb(l2={d:g})", features=False, emb_decay=d) for d in (1e-2, 3e-3)]
    out += [
        TransferCandidate(f"emb+features(l2={d:g}, features l2={f:g})", emb_decay=d, feature_decay=f)
        for f in (1e-1, 1e-2)
        for d in (1e-2, 3e-3)
    ]
    out.append(
        TransferCandidate("emb+features(l2=0.01, features l2=0.1, balance=0.5)", feature_decay=1e-1, balance=0.5)
    )
    return out


#: A simpler candidate is kept when its grouped-CV ranking quality is at most this much below the best one's.
TRANSFER_TOLERANCE = 0.002


@dataclass
class TransferSelection:
    """The configuration chosen by leave-one-source-out CV, and how to fit it (sources looked up by query text)."""

    chosen: TransferCandidate
    scores: dict[str, float]
    per_source: dict[str, dict[str, float]]
    source_of: dict[str, str] = field(repr=False)
    counts: dict[str, int] = field(default_factory=dict)
    #: weight of the source-centred kNN part blended onto the linear head (0: none)
    knn_weight: float = 0.0
    #: how the folds were made: ``"leave-one-source-out"`` or ``"by query"``
    scheme: str = "leave-one-source-out"

    def sources(self, texts: Sequence[str]) -> list[str]:
        """The source of each text (a text not seen in the selection data: ``"(other)"``)."""
        return [self.source_of.get(t, OTHER_SOURCE) for t in texts]

    def fit(self, embeddings: np.ndarray, texts: Sequence[str], labels: np.ndarray, seed: int = 0) -> RouterHead:
        """Fit the chosen configuration (with source intercepts) on these queries."""
        texts, labels, sources = list(texts), np.asarray(labels, np.float64), self.sources(texts)
        head = self.chosen.fit(embeddings, texts, query_features(texts), labels, sources, seed)
        if not self.knn_weight:
            return head
        return blend_centred_knn(head, fit_centred_knn(embeddings, labels, sources, seed), self.knn_weight)

    @property
    def name(self) -> str:
        """The chosen configuration, e.g. ``"emb(l2=0.01) + centred knn(k=100, weight=0.5)"``."""
        if not self.knn_weight:
            return self.chosen.name
        return f"{self.chosen.name} + centred knn(k={CENTRED_KNN_K}, weight={self.knn_weight:g})"

    def to_dict(self) -> dict:
        """JSON-able summary (stored in the router's info)."""
        return {
            "chosen": self.name,
            "method": "source intercepts (+ kNN on source-centred labels)",
            "cv": self.scheme,
            "sources": self.counts,
            "cv_ranking_quality": {k: round(v, 4) for k, v in self.scores.items()},
            "cv_by_source": {k: {s: round(v, 4) for s, v in per.items()} for k, per in self.per_source.items()},
        }


#: A source is held out as a fold only when the other sources have at least this many queries together (a fold
#: that trains on a few dozen queries says little about the router fitted on all of them).
MIN_FOLD_QUERIES = MIN_CV_QUERIES
CV_FOLDS = 5


def _cv_folds(sources: np.ndarray, seed: int, min_fold_queries: int) -> tuple[list[tuple[str, np.ndarray]], str]:
    """Leave-one-source-out folds (each source whose complement has at least ``min_fold_queries`` queries); when
    there is none, ``CV_FOLDS`` random folds by query."""
    names = np.unique(sources)
    folds = [(str(n), np.flatnonzero(sources == n)) for n in names]
    folds = [(n, test) for n, test in folds if len(sources) - len(test) >= min_fold_queries]
    if folds:
        return folds, "leave-one-source-out"
    return [(f"fold{f}", test) for f, test in enumerate(_folds(len(sources), CV_FOLDS, seed))], "by query"


def select_transfer_head(
    embeddings: np.ndarray,
    texts: Sequence[str],
    labels: np.ndarray,
    sources: Sequence[str],
    seed: int = 0,
    *,
    candidates: Sequence[TransferCandidate] | None = None,
    tolerance: float = TRANSFER_TOLERANCE,
    min_fold_queries: int = MIN_FOLD_QUERIES,
) -> TransferSelection:
    """Cross-validate the candidates and keep the first (simplest) within ``tolerance`` of the best; then blend in
    the centred kNN part if that scores better.

    Folds: leave-one-source-out, each source whose complement has at least ``min_fold_queries`` queries held out
    once (with two sources, one of a few dozen queries, the one fold trains on the large source); the score is the
    mean over held-out sources of the ranking quality within each. With no such source: 5 random folds by query,
    and the score is the mean ranking quality within each source.
    """
    candidates = list(candidates or transfer_candidates())
    texts = list(texts)
    labels = np.asarray(labels, dtype=np.float64)
    sources = np.asarray(list(sources), dtype=object).astype(str)
    names, counts = np.unique(sources, return_counts=True)
    if len(names) < 2:
        raise ValueError("the transfer selection needs at least two sources")
    feats = query_features(texts)
    folds, scheme = _cv_folds(sources, seed, min_fold_queries)
    oof = np.zeros((len(candidates), len(labels)))
    knn_oof = np.zeros(len(labels))
    for _, test in folds:
        train = np.setdiff1d(np.arange(len(labels)), test)
        train_texts, test_texts = [texts[i] for i in train], [texts[i] for i in test]
        for c, cand in enumerate(candidates):
            head = cand.fit(embeddings[train], train_texts, feats[train], labels[train], sources[train], seed)
            oof[c, test] = head.predict(embeddings[test], test_texts)
        knn = fit_centred_knn(embeddings[train], labels[train], sources[train], seed)
        knn_oof[test] = logit(knn.predict(embeddings[test], test_texts)) - logit(np.array([knn.prior]))[0]
    if scheme == "leave-one-source-out":
        groups = folds
    else:
        groups = [(str(n), np.flatnonzero(sources == n)) for n in names]

    def judge(scores: np.ndarray) -> dict[str, float]:
        return {name: ranking_quality(scores[idx], labels[idx]) for name, idx in groups}

    per_source = {cand.name: judge(oof[c]) for c, cand in enumerate(candidates)}
    scores = {name: float(np.mean(list(per.values()))) for name, per in per_source.items()}
    best = max(scores.values())
    c_best = next(c for c, cand in enumerate(candidates) if scores[cand.name] >= best - tolerance)
    chosen = candidates[c_best]
    knn_weight, best_blend = 0.0, scores[chosen.name]
    for weight in CENTRED_KNN_WEIGHTS:  # blended in only when that ranks the held-out queries better
        name = f"{chosen.name} + centred knn(k={CENTRED_KNN_K}, weight={weight:g})"
        per_source[name] = judge(logit(oof[c_best]) + weight * knn_oof)
        scores[name] = float(np.mean(list(per_source[name].values())))
        if scores[name] > best_blend:
            knn_weight, best_blend = weight, scores[name]
    return TransferSelection(
        chosen,
        scores,
        per_source,
        dict(zip(texts, sources.tolist())),
        {str(n): int(c) for n, c in zip(names, counts)},
        knn_weight,
        scheme,
    )


def run_transfer(
    embeddings: np.ndarray,
    texts: Sequence[str],
    labels: np.ndarray,
    sources: Sequence[str] | None,
    seed: int = 0,
    *,
    source_of: dict[str, str] | None = None,
) -> RecipeFit:
    """The ``transfer`` recipe: source intercepts, configuration by leave-one-source-out CV. With fewer than two
    sources (or fewer than ``MIN_CV_QUERIES`` queries) it is the ``auto`` head search. ``.refit`` looks the
    sources of its queries up by text in ``source_of`` (plus these ``texts``)."""
    texts = list(texts)
    if sources is None or len(set(sources)) < 2 or len(texts) < MIN_CV_QUERIES or np.ptp(labels) == 0:
        fitted = fit_selection(select_head(embeddings, texts, labels, seed), embeddings, texts, labels, seed)
        fitted.details["transfer"] = "one source: the auto head search"
        return fitted
    selection = select_transfer_head(embeddings, texts, labels, sources, seed)
    if source_of:
        selection.source_of = {**source_of, **selection.source_of}
    return RecipeFit(selection.fit(embeddings, texts, labels, seed), selection.fit, selection.to_dict())


def fit_transfer(embeddings: np.ndarray, texts: Sequence[str], labels: np.ndarray, seed: int = 0) -> RouterHead:
    """The ``transfer`` recipe without source information (a ``RECIPES`` entry): the ``auto`` head search.
    ``train_router`` passes the sources from the query ids (:func:`query_sources`)."""
    return run_transfer(embeddings, texts, labels, None, seed).head
