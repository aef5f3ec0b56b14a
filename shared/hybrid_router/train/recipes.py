"""Training recipes: functions ``(embeddings, texts, labels, seed) -> RouterHead``.

* ``logistic``: logistic regression on the embedding (the Hybrid LLM paper's head on a frozen encoder).
* ``features``: logistic regression on the hand-made query features (:mod:`hybrid_router.features`).
* ``knn``: label smoothing over the 30 nearest training queries.
* ``transfer``: for data pooled from several sources (query ids ``source/...``): one intercept per source, so
  the head learns what makes a query hard *within* a source rather than which source it looks like; configuration
  chosen by leave-one-source-out CV (:mod:`hybrid_router.train.transfer`).
* ``auto`` (the default): chooses, by 5-fold cross-validation on the training data only, among logistic
  regressions on the query features alone, the embedding alone or both (several regularisation strengths), and
  blends in a kNN head when that is clearly better out of fold (see :func:`select_head`). Below 200 training queries
  it fits the paper's embedding-only logistic regression (:data:`FALLBACK`). ``train_router`` also chooses the
  encoder depth for it (:mod:`hybrid_router.depth`).

Labels may be soft (``prob`` / ``trans`` modes); every fitter minimises binary cross-entropy against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..core.features import query_features
from ..core.head import FEATURE_CLIP, BlendHead, KnnHead, LinearHead, LogisticHead, RouterHead, logit
from .evaluation import evaluate_scores

#: The auto recipe's kNN heads keep at most this many training queries: a query then costs one
#: [384] x [384, 2000] product (3 MB of float32 keys), a fraction of a millisecond.
KNN_MAX_ITEMS = 2000

HeadFitter = Callable[[np.ndarray, Sequence[str], np.ndarray, int], RouterHead]


def _lbfgs(
    blocks: list[torch.Tensor],
    decays: list[float],
    y: torch.Tensor,
    steps: int,
    sample_weight: torch.Tensor | None = None,
) -> tuple[list, float]:
    """Fit ``sigmoid(sum_b x_b @ w_b + c)`` to soft labels with an L2 penalty ``decay_b * |w_b|^2`` per block
    (``sample_weight``: per-row weights of the cross-entropy, mean 1)."""
    weights = [torch.zeros(x.shape[1], requires_grad=True) for x in blocks]
    bias = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([*weights, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        z = bias + sum(x @ w for x, w in zip(blocks, weights))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y, weight=sample_weight)
        loss = loss + sum(d * (w * w).sum() for d, w in zip(decays, weights))
        loss.backward()
        return loss

    opt.step(closure)
    return [w.detach().numpy() for w in weights], float(bias.item())


def fit_logistic(
    embeddings: np.ndarray,
    texts: Sequence[str],
    labels: np.ndarray,
    seed: int = 0,
    weight_decay: float = 1e-3,
    steps: int = 300,
) -> LogisticHead:
    """Logistic regression on (soft) labels with L2 regularisation, fitted by L-BFGS."""
    torch.manual_seed(seed)
    x = torch.as_tensor(embeddings, dtype=torch.float32)
    (w,), b = _lbfgs([x], [weight_decay], torch.as_tensor(labels, dtype=torch.float32), steps)
    return LogisticHead(w, b)


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations (constant columns get std 1, so they standardise to 0)."""
    mean = features.mean(axis=0)
    std = features.std(axis=0)
    return mean, np.where(std > 1e-6, std, 1.0)


def fit_linear(
    embeddings: np.ndarray,
    texts: Sequence[str],
    labels: np.ndarray,
    seed: int = 0,
    *,
    embedding: bool = True,
    features: bool = True,
    emb_decay: float = 1e-2,
    feature_decay: float = 1e-2,
    steps: int = 300,
    feature_matrix: np.ndarray | None = None,
    clip: float = FEATURE_CLIP,
) -> LinearHead:
    """Logistic regression on the embedding and/or the standardised query features (separate L2 strengths).

    ``feature_matrix`` may pass precomputed ``query_features(texts)``.
    """
    torch.manual_seed(seed)
    blocks, decays = [], []
    if embedding:
        blocks.append(torch.as_tensor(embeddings, dtype=torch.float32))
        decays.append(emb_decay)
    if features:
        f = query_features(texts) if feature_matrix is None else feature_matrix
        mean, std = feature_stats(f)
        z = np.clip((f - mean) / std, -clip, clip)  # as LinearHead.standardise does
        blocks.append(torch.as_tensor(z, dtype=torch.float32))
        decays.append(feature_decay)
    weights, bias = _lbfgs(blocks, decays, torch.as_tensor(labels, dtype=torch.float32), steps)
    return LinearHead(
        weights[0] if embedding else None,
        weights[-1] if features else None,
        bias,
        mean if features else None,
        std if features else None,
        clip=clip,
    )


def fit_features(embeddings: np.ndarray, texts: Sequence[str], labels: np.ndarray, seed: int = 0) -> LinearHead:
    """Logistic regression on the query features only."""
    return fit_linear(embeddings, texts, labels, seed, embedding=False, feature_decay=1e-2)


def fit_knn(
    embeddings: np.ndarray,
    texts: Sequence[str],
    labels: np.ndarray,
    seed: int = 0,
    *,
    k: int = 30,
    temperature: float = 0.0,
    strength: float = 1.0,
    max_items: int | None = KNN_MAX_ITEMS,
) -> KnnHead:
    """Store (a seeded sample of at most ``max_items`` of) the training embeddings and labels."""
    idx = np.arange(len(labels))
    if max_items is not None and len(idx) > max_items:
        idx = np.sort(np.random.default_rng(seed).permutation(len(idx))[:max_items])
    return KnnHead(
        embeddings[idx],
        np.asarray(labels)[idx],
        k=k,
        temperature=temperature,
        strength=strength,
        prior=float(np.mean(labels)),
    )


# ------------------------------------------------------------------ model selection ("auto")
def ranking_quality(scores: np.ndarray, labels: np.ndarray) -> float:
    """How well ``scores`` rank queries by their label: the APGR of routing with quality ``label`` on the small
    model and 1 on the large one (for 0/1 labels an affine function of the ROC AUC)."""
    labels = np.asarray(labels, dtype=np.float64)
    if np.ptp(labels) == 0:
        return 0.5
    return evaluate_scores("cv", scores, labels, np.ones_like(labels)).apgr


@dataclass
class Candidate:
    """One head configuration of the ``auto`` search."""

    name: str
    family: str
    fit: Callable[[np.ndarray, Sequence[str], np.ndarray, np.ndarray, int], RouterHead]  # (emb, texts, feats, y, seed)


def _linear_candidate(name: str, family: str, **kw) -> Candidate:
    def fit(emb, texts, feats, y, seed):
        return fit_linear(emb, texts, y, seed, feature_matrix=feats, **kw)

    return Candidate(name, family, fit)


def _knn_candidate(k: int, max_items: int | None) -> Candidate:
    def fit(emb, texts, feats, y, seed):
        return fit_knn(emb, texts, y, seed, k=k, max_items=max_items)

    return Candidate(f"knn(k={k})", "knn", fit)


def default_candidates(knn_max_items: int | None = KNN_MAX_ITEMS) -> list[Candidate]:
    """The search space of the ``auto`` recipe: linear heads (one is chosen) and kNN heads (blended in or not),
    each family ordered from the simplest (most regularised / smoothest) to the most flexible."""
    out = [_linear_candidate("features(l2=0.01)", "linear", embedding=False, feature_decay=1e-2)]
    out += [
        _linear_candidate(f"emb(l2={d:g})", "linear", emb_decay=d, features=False)
        for d in (1e-2, 3e-3, 1e-3, 3e-4, 1e-4)
    ]
    out += [
        _linear_candidate(f"emb+features(l2={d:g})", "linear", emb_decay=d, feature_decay=1e-2)
        for d in (3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4)
    ]
    out += [_knn_candidate(k, knn_max_items) for k in (100, 30)]
    return out


#: Fewer training queries than this are too few to cross-validate: :func:`select_head` then uses :data:`FALLBACK`.
MIN_CV_QUERIES = 200

#: Below ``min_queries`` the auto recipe fits the paper's head (logistic regression on the embedding alone): with
#: a few dozen queries the feature block's 35 weights and z-scores are estimated from too little data.
FALLBACK = _linear_candidate("embedding(l2=0.01)", "linear", emb_decay=1e-2, features=False)


@dataclass
class Selection:
    """What the ``auto`` recipe chose: one candidate, or two blended with fixed weights; ``scores`` holds the mean
    out-of-fold ranking quality of every candidate (and of the blend it tried)."""

    parts: list[Candidate]
    scores: dict[str, float]
    weights: np.ndarray | None = None
    bias: float = 0.0

    @property
    def name(self) -> str:
        """The chosen head, e.g. ``"features(l2=0.01)"`` or ``"blend(... + knn(k=100))"``."""
        names = [p.name for p in self.parts]
        return names[0] if self.weights is None else f"blend({' + '.join(names)})"

    def fit(self, embeddings: np.ndarray, texts: Sequence[str], labels: np.ndarray, seed: int = 0) -> RouterHead:
        """Fit the chosen configuration on (possibly other) data; blend weights stay as chosen."""
        texts = list(texts)
        feats = query_features(texts)
        heads = [p.fit(embeddings, texts, feats, np.asarray(labels, dtype=np.float64), seed) for p in self.parts]
        return heads[0] if self.weights is None else BlendHead(heads, self.weights, self.bias)

    def to_dict(self) -> dict:
        """JSON-able summary (stored in the router's info)."""
        out: dict = {"chosen": self.name, "cv_ranking_quality": {k: round(v, 4) for k, v in self.scores.items()}}
        if self.weights is not None:
            out["blend_weights"] = [round(float(w), 4) for w in self.weights]
        return out


def _folds(n: int, n_folds: int, seed: int) -> list[np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(perm[f::n_folds]) for f in range(n_folds)]


def select_head(
    embeddings: np.ndarray,
    texts: Sequence[str],
    labels: np.ndarray,
    seed: int = 0,
    *,
    candidates: Sequence[Candidate] | None = None,
    n_folds: int = 5,
    min_queries: int = MIN_CV_QUERIES,
    blend_margin: float = 0.005,
) -> Selection:
    """Cross-validate the candidates on the training data and choose a configuration (fit it with ``.fit``).

    The base is the simplest linear candidate within one standard error (of the paired per-fold differences) of
    the best one by mean out-of-fold ranking quality. It is blended with the kNN candidate chosen the same way
    (``sigmoid(a * logit(linear) + b * logit(knn) + c)``, fitted on the out-of-fold logits) only when both weights
    are positive and the blend is better out of fold by ``blend_margin`` (it was fitted on the same logits, so it
    gets no benefit of the doubt). Below ``min_queries`` training queries cross-validation is too noisy to choose
    anything: the fixed :data:`FALLBACK` configuration is used.
    """
    candidates = list(candidates or default_candidates())
    labels = np.asarray(labels, dtype=np.float64)
    texts = list(texts)
    n = len(labels)
    if n < max(min_queries, 2 * n_folds) or np.ptp(labels) == 0:
        return Selection([FALLBACK], {})
    feats = query_features(texts)
    folds = _folds(n, n_folds, seed)
    oof = np.zeros((len(candidates), n))
    fold_scores = np.zeros((len(candidates), len(folds)))
    for f, test in enumerate(folds):
        train = np.setdiff1d(np.arange(n), test)
        sub_texts, test_texts = [texts[i] for i in train], [texts[i] for i in test]
        for c, cand in enumerate(candidates):
            head = cand.fit(embeddings[train], sub_texts, feats[train], labels[train], seed)
            oof[c, test] = head.predict(embeddings[test], test_texts)
            fold_scores[c, f] = ranking_quality(oof[c, test], labels[test])
    scores = {cand.name: float(m) for cand, m in zip(candidates, fold_scores.mean(axis=1))}

    def pick(family: str) -> int | None:
        """The first (simplest) member within one standard error of the family's best."""
        members = [c for c, cand in enumerate(candidates) if cand.family == family]
        if not members:
            return None
        top = max(members, key=lambda c: fold_scores[c].mean())
        for c in members:
            diff = fold_scores[top] - fold_scores[c]
            if diff.mean() <= diff.std(ddof=1) / np.sqrt(len(diff)):
                return c
        return top

    base, knn = pick("linear"), pick("knn")
    if base is None:
        raise ValueError("the auto recipe needs at least one linear candidate")
    if knn is None:
        return Selection([candidates[base]], scores)
    z = logit(oof[[base, knn]].T)
    (weights,), bias = _lbfgs(
        [torch.as_tensor(z, dtype=torch.float32)], [1e-3], torch.as_tensor(labels, dtype=torch.float32), 100
    )
    blended = z @ weights + bias
    blend = Selection([candidates[base], candidates[knn]], scores, weights, bias)
    scores[blend.name] = float(np.mean([ranking_quality(blended[t], labels[t]) for t in folds]))
    if np.all(weights > 0) and scores[blend.name] > scores[candidates[base].name] + blend_margin:
        return blend
    return Selection([candidates[base]], scores)


def fit_auto(embeddings: np.ndarray, texts: Sequence[str], labels: np.ndarray, seed: int = 0) -> RouterHead:
    """The default recipe: cross-validated choice among feature / embedding+feature heads, blended with kNN when
    that clearly helps (see :func:`select_head`)."""
    return select_head(embeddings, texts, labels, seed).fit(embeddings, texts, labels, seed)


@dataclass
class RecipeFit:
    """A fitted head, how to fit the same configuration on other data, and what the recipe chose."""

    head: RouterHead
    refit: HeadFitter
    details: dict


def fit_selection(
    selection: Selection, embeddings: np.ndarray, texts: Sequence[str], labels: np.ndarray, seed: int = 0
) -> RecipeFit:
    """Fit an ``auto`` selection already made on these embeddings."""
    return RecipeFit(selection.fit(embeddings, texts, labels, seed), selection.fit, selection.to_dict())


def run_recipe(
    recipe: str,
    embeddings: np.ndarray,
    texts: Sequence[str],
    labels: np.ndarray,
    seed: int = 0,
    sources: Sequence[str] | None = None,
    *,
    source_of: dict[str, str] | None = None,
) -> RecipeFit:
    """Fit ``recipe``; ``.refit`` repeats the same configuration (for ``auto``: the same choice) on new data.
    ``sources`` (the source of each query) and ``source_of`` (text -> source, for the refits on other queries) are
    read by the ``transfer`` recipe only."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if recipe == "transfer":
        from .transfer import run_transfer

        return run_transfer(embeddings, texts, labels, sources, seed, source_of=source_of)
    if recipe == "auto":
        return fit_selection(select_head(embeddings, texts, labels, seed), embeddings, texts, labels, seed)
    fitter = RECIPES[recipe]
    return RecipeFit(fitter(embeddings, texts, labels, seed), fitter, {})


def fit_transfer(embeddings: np.ndarray, texts: Sequence[str], labels: np.ndarray, seed: int = 0) -> RouterHead:
    """The ``transfer`` recipe (:mod:`hybrid_router.train.transfer`); without sources it is ``auto``."""
    from .transfer import fit_transfer as fit

    return fit(embeddings, texts, labels, seed)


RECIPES: dict[str, HeadFitter] = {
    "auto": fit_auto,
    "transfer": fit_transfer,
    "logistic": fit_logistic,
    "features": fit_features,
    "knn": fit_knn,
}
DEFAULT_RECIPE = "auto"
