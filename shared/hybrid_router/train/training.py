"""Training a router: encode queries, make labels, fit a head (see :mod:`hybrid_router.recipes`), calibrate on a
held-out split, report metrics, refit the head on all queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..core.calibration import Calibration
from ..core.cascade import CascadeCalibration
from ..core.encoder import DEFAULT_ENCODER, Encoder
from ..core.options import validate_fraction
from ..core.router import HybridRouter
from ..core.verifier import AnswerVerifier
from .data_io import RoutingData
from .depth import DEFAULT_DEPTHS, select_depth
from .evaluation import RoutingReport, evaluate_cascade, evaluate_scores, evaluate_with_references
from .labels import make_labels
from .recipes import DEFAULT_RECIPE, RECIPES, HeadFitter, _folds, fit_logistic, fit_selection, run_recipe
from .transfer import query_sources
from .verifier import VerifierInputs, VerifierSelection, fit_candidate, predict, select_verifier, verifier_inputs

__all__ = [
    "DEFAULT_MAX_QUALITY_DROP",
    "DEFAULT_RECIPE",
    "RECIPES",
    "HeadFitter",
    "TrainResult",
    "fit_logistic",
    "train_router",
]

#: A trained router's default threshold is the calibrated one for this quality drop (relative to always-large).
DEFAULT_MAX_QUALITY_DROP = 0.01


@dataclass
class TrainResult:
    """A trained router and what was measured on its validation split."""

    router: HybridRouter
    relaxation: float
    label_mean: float
    validation: list[RoutingReport] = field(default_factory=list)
    n_train: int = 0
    n_val: int = 0
    #: scores of the validation queries (``data.split(1 - val_fraction, seed=seed)[1]``) by the pre-refit head
    val_scores: np.ndarray | None = None
    #: the pre-refit verifier's scores of the validation queries' small answers (when the data has answers)
    val_verifier_scores: np.ndarray | None = None


def train_router(
    data: RoutingData,
    *,
    labels: str = "det",
    relaxation: float | None = None,
    recipe: str = DEFAULT_RECIPE,
    encoder: Encoder | str = DEFAULT_ENCODER,
    val_fraction: float = 0.2,
    seed: int = 0,
    refit: bool = True,
    default_max_quality_drop: float | None = DEFAULT_MAX_QUALITY_DROP,
    depths: Sequence[int | None] | None = DEFAULT_DEPTHS,
    verifier: bool = True,
    progress: bool = False,
) -> TrainResult:
    """Train on ``1 - val_fraction`` of the queries, calibrate and evaluate on the rest.

    The relaxation t* of ``trans`` labels and the ``auto`` recipe's choice are made on the training split only.
    With ``refit`` (default) the chosen head configuration is then fitted again on all queries (same t*, same
    choice), which gives the head 1 / (1 - val_fraction) times more data; the calibration table and the
    validation metrics stay those of the head trained without the held-out split.

    With the ``auto`` recipe and an encoder whose ``layers`` is not fixed, the encoder depth is chosen among
    ``depths`` by cross-validation on the training split (:func:`hybrid_router.depth.select_depth`; ``None`` or
    too little data to cross-validate: the whole encoder).

    The router's ``default_threshold`` (used when a call sets nothing) is the calibrated threshold for
    ``default_max_quality_drop`` (1% by default): scores are probabilities, and where the small model is usually
    good enough they all sit well above 0.5, so a fixed 0.5 would send every call small. ``None`` keeps 0.5.

    When ``data`` has the small model's answers (a ``small_answer`` column) and ``verifier`` is set, the answer
    verifier is trained too (:mod:`hybrid_router.train.verifier`, same labels, inputs chosen by CV on the training
    split), and the cascade's two thresholds are calibrated jointly
    (:class:`~hybrid_router.core.cascade.CascadeCalibration`); the validation reports then include the verifier
    alone and the cascade (its report calibrated on the validation rows themselves, so optimistic: ``hybrid-llm
    eval`` on other data is not).

    Calibration: with ``refit`` (and at least :data:`MIN_OOF_QUERIES` queries) the tables come from 5-fold
    out-of-fold scores over all queries, then are carried onto the refitted head's (and verifier's) scores by rank
    (:func:`same_ranks`); without ``refit``, from the validation split.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if default_max_quality_drop is not None:
        validate_fraction("default_max_quality_drop", default_max_quality_drop)
    train_idx, val_idx = data.split_indices(1.0 - val_fraction, seed=seed)
    train, val = data.subset(train_idx), data.subset(val_idx)
    if len(train) < 2 or len(val) < 1:
        raise ValueError(f"too few queries to train ({len(data)}); need at least 3")
    y, t_used = make_labels(train, labels, t=relaxation)
    enc = encoder if isinstance(encoder, Encoder) else Encoder(encoder)
    depth = None
    if recipe == "auto" and depths and enc.layers is None:
        depth = select_depth(enc, train.queries, y, seed, depths=depths, progress=progress)
    if depth is not None:
        enc, emb_train = depth.encoder, depth.embeddings
        fitted = fit_selection(depth.selection, emb_train, train.queries, y, seed)
    else:
        emb_train = enc.encode(train.queries, progress=progress)
        sources = query_sources(data.query_ids) if recipe == "transfer" else None
        fitted = run_recipe(
            recipe,
            emb_train,
            train.queries,
            y,
            seed,
            None if sources is None else sources[train_idx],
            source_of=None if sources is None else dict(zip(data.queries, sources)),
        )
    info = {
        "recipe": recipe,
        "trained_on": data.source,
        "n_train": len(train),
        "metric": data.metric,
        "small_model": data.small_model,
        "large_model": data.large_model,
    }
    if fitted.details:
        info["selection"] = fitted.details
    if depth is not None:
        info["depth_selection"] = depth.details()
    router = HybridRouter(fitted.head, encoder=enc, label_mode=labels, relaxation=t_used, info=info)
    emb_val = enc.encode(val.queries, progress=progress)
    val_scores = router.score_embeddings(emb_val, val.queries)
    small_q, large_q = val.mean_small(), val.mean_large()
    reports = evaluate_with_references(val_scores, small_q, large_q)
    emb_all = np.empty((len(data), emb_train.shape[1]), dtype=emb_train.dtype)
    emb_all[train_idx], emb_all[val_idx] = emb_train, emb_val  # each query is encoded once
    answers = VerifierPlan.make(router, data, emb_all, train_idx, y, seed, progress) if verifier else None
    val_verifier_scores = None
    if answers is not None:
        val_verifier_scores = predict(answers.fit(train_idx, y), answers.inputs.subset(val_idx))
        on_val = CascadeCalibration.fit(val_scores, val_verifier_scores, small_q, large_q)
        reports[-1:-1] = [
            evaluate_scores("verifier", val_verifier_scores, small_q, large_q),
            evaluate_cascade("cascade", on_val, val_scores, val_verifier_scores, small_q, large_q),
        ]
        router.info["verifier"] = answers.selection.to_dict()
    if refit:
        y_all = make_labels(data, labels, t=t_used)[0]
        _refit_and_calibrate(router, fitted.refit, answers, data, emb_all, y_all, seed)
    else:
        _calibrate(router, val_scores, val_verifier_scores, small_q, large_q)
        if answers is not None:
            router.verifier = answers.fit(train_idx, y)
    if default_max_quality_drop is not None:
        router.default_threshold = router.calibration.threshold_for_max_quality_drop(default_max_quality_drop)
        router.info["default_threshold_rule"] = f"calibrated: max_quality_drop={default_max_quality_drop:g}"
    return TrainResult(
        router, t_used, float(np.mean(y)), reports, len(train), len(val), val_scores, val_verifier_scores
    )


@dataclass
class VerifierPlan:
    """The answer verifier's inputs for every query and the configuration chosen on the training split."""

    inputs: VerifierInputs
    selection: VerifierSelection
    seed: int

    @classmethod
    def make(cls, router, data, query_emb, train_idx, y_train, seed, progress) -> "VerifierPlan | None":
        """None when the data has no small-model answers."""
        if data.small_answers is None:
            return None
        answer_emb = router.encoder.encode(data.small_answers, progress=progress)
        inputs = verifier_inputs(data.queries, data.small_answers, query_emb, answer_emb)
        return cls(inputs, select_verifier(inputs.subset(train_idx), y_train, seed), seed)

    def fit(self, index: np.ndarray, labels: np.ndarray) -> AnswerVerifier:
        """The chosen configuration fitted on the queries at ``index``."""
        verifier = fit_candidate(self.selection.chosen, self.inputs.subset(index), labels, self.seed)
        verifier.info.update(self.selection.to_dict(), n_train=len(index))
        return verifier


#: Calibration tables come from out-of-fold scores over all queries when there are at least this many.
MIN_OOF_QUERIES = 50
OOF_FOLDS = 5


def _out_of_fold(n: int, seed: int, fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Scores of every query by a model fitted without its fold (``fit_predict(train_idx, test_idx)``)."""
    out = np.empty(n, dtype=np.float64)
    for test in _folds(n, OOF_FOLDS, seed):
        out[test] = fit_predict(np.setdiff1d(np.arange(n), test), test)
    return out


def _refit_and_calibrate(
    router: HybridRouter,
    refit: HeadFitter,
    answers: VerifierPlan | None,
    data: RoutingData,
    emb: np.ndarray,
    y: np.ndarray,
    seed: int,
) -> None:
    """Refit the head (and verifier) on all queries; calibrate on out-of-fold scores of all queries.

    Out-of-fold scores cover every query, not only the validation split, so the tables (and the cascade's 2-D
    frontier) are estimated on 5x more rows; they are then carried onto the refitted models' scores by rank.
    """
    queries = data.queries
    n = len(queries)

    def head_scores(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        head = refit(emb[train], [queries[i] for i in train], y[train], seed)
        return np.clip(head.predict(emb[test], [queries[i] for i in test]), 0.0, 1.0)

    def verifier_scores(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        return predict(answers.fit(train, y[train]), answers.inputs.subset(test))

    use_oof = n >= MIN_OOF_QUERIES and np.ptp(y) > 0
    router.head = refit(emb, queries, y, seed)
    router.info.update(n_train=n, refit_on_all=True, calibration="out-of-fold" if use_oof else "refit scores")
    now = router.score_embeddings(emb, queries)
    route_cal = _out_of_fold(n, seed, head_scores) if use_oof else now
    verify_now = verify_cal = None
    if answers is not None:
        router.verifier = answers.fit(np.arange(n), y)
        verify_now = predict(router.verifier, answers.inputs)
        verify_cal = _out_of_fold(n, seed, verifier_scores) if use_oof else verify_now
    _calibrate(router, route_cal, verify_cal, data.mean_small(), data.mean_large())
    router.calibration.thresholds = same_ranks(router.calibration.thresholds, route_cal, now)
    if router.cascade is not None:
        router.cascade.route_thresholds = same_ranks(router.cascade.route_thresholds, route_cal, now)
        router.cascade.verify_thresholds = same_ranks(router.cascade.verify_thresholds, verify_cal, verify_now)


def _calibrate(router: HybridRouter, route_scores, verify_scores, small_q, large_q) -> None:
    """The router's calibration table (and the cascade's, given verifier scores) from labelled scores."""
    router.calibration = Calibration.fit(route_scores, small_q, large_q)
    if verify_scores is not None:
        router.cascade = CascadeCalibration.fit(route_scores, verify_scores, small_q, large_q)


def same_ranks(thresholds: np.ndarray, old_scores: np.ndarray, new_scores: np.ndarray) -> np.ndarray:
    """Thresholds on ``new_scores`` that split the same queries as ``thresholds`` split ``old_scores``.

    Calibration tables are built from the held-out scores of the head fitted without the validation split; the
    head refitted on all data scores the same queries in the same order, but its scale and intercept move (more
    data, the same regularisation), so a raw threshold would no longer send the calibrated share of calls large.
    A threshold that had k of the old scores below it becomes the k-th smallest new score (0 stays 0; one above
    every old score stays above every new one).
    """
    old, new = np.sort(np.asarray(old_scores, np.float64)), np.sort(np.asarray(new_scores, np.float64))
    below = np.searchsorted(old, np.asarray(thresholds, np.float64), side="left")
    above_all = min(float(np.nextafter(new[-1], np.inf)), 1.0)
    mapped = np.where(below < len(new), new[np.minimum(below, len(new) - 1)], above_all)
    return np.where(np.asarray(thresholds) <= 0.0, 0.0, np.maximum(mapped, np.nextafter(0.0, 1.0)))
