"""Training a router: encode queries, make labels, fit a head (see :mod:`hybrid_router.recipes`), calibrate on a
held-out split, report metrics, refit the head on all queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..core.calibration import Calibration
from ..core.cascade import CascadeCalibration
from ..core.encoder import DEFAULT_ENCODER, Encoder
from ..core.options import validate_fraction
from ..core.router import HybridRouter
from .data_io import RoutingData
from .depth import DEFAULT_DEPTHS, select_depth
from .evaluation import RoutingReport, evaluate_cascade, evaluate_scores, evaluate_with_references
from .labels import make_labels
from .recipes import DEFAULT_RECIPE, RECIPES, HeadFitter, fit_logistic, fit_selection, run_recipe
from .verifier import fit_candidate, predict, select_verifier, verifier_inputs

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
    split), and the cascade's two thresholds are calibrated jointly on the validation split
    (:class:`~hybrid_router.core.cascade.CascadeCalibration`); the validation reports then include the verifier
    alone and the cascade (calibrated on those same rows, so optimistic: ``hybrid-llm eval`` on other data is not).
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
        fitted = run_recipe(recipe, emb_train, train.queries, y, seed)
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
    router.calibration = Calibration.fit(val_scores, small_q, large_q)
    reports = evaluate_with_references(val_scores, small_q, large_q)
    if default_max_quality_drop is not None:
        router.default_threshold = router.calibration.threshold_for_max_quality_drop(default_max_quality_drop)
        router.info["default_threshold_rule"] = f"calibrated: max_quality_drop={default_max_quality_drop:g}"
    emb_all = np.empty((len(data), emb_train.shape[1]), dtype=emb_train.dtype)
    emb_all[train_idx], emb_all[val_idx] = emb_train, emb_val  # each query is encoded once
    y_all = make_labels(data, labels, t=t_used)[0] if refit else None
    val_verifier_scores = None
    if verifier and data.small_answers is not None:
        val_verifier_scores = _add_verifier(router, data, train_idx, val_idx, emb_all, y, y_all, seed, progress)
        cascade = evaluate_cascade("cascade", router.cascade, val_scores, val_verifier_scores, small_q, large_q)
        reports[-1:-1] = [evaluate_scores("verifier", val_verifier_scores, small_q, large_q), cascade]
    if refit:
        router.head = fitted.refit(emb_all, data.queries, y_all, seed)
        router.info.update(n_train=len(data), refit_on_all=True)
        _carry_thresholds(router, val_scores, router.score_embeddings(emb_val, val.queries))
    return TrainResult(
        router, t_used, float(np.mean(y)), reports, len(train), len(val), val_scores, val_verifier_scores
    )


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


def _carry_thresholds(router: HybridRouter, old_scores: np.ndarray, new_scores: np.ndarray) -> None:
    """Move the router's calibrated thresholds onto the refitted head's scores (see :func:`same_ranks`)."""
    calibration = router.calibration
    calibration.thresholds = same_ranks(calibration.thresholds, old_scores, new_scores)
    router.default_threshold = float(same_ranks([router.default_threshold], old_scores, new_scores)[0])
    if router.cascade is not None:
        router.cascade.route_thresholds = same_ranks(router.cascade.route_thresholds, old_scores, new_scores)


def _add_verifier(
    router: HybridRouter,
    data: RoutingData,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    query_emb: np.ndarray,
    y_train: np.ndarray,
    y_all: np.ndarray | None,
    seed: int,
    progress: bool,
) -> np.ndarray:
    """Train the answer verifier on the training split, calibrate the cascade on the validation split and (given
    ``y_all``) refit the chosen verifier on all queries; returns the validation answers' scores."""
    answers = data.small_answers
    answer_emb = router.encoder.encode(answers, progress=progress)
    inputs = verifier_inputs(data.queries, answers, query_emb, answer_emb)
    selection = select_verifier(inputs.subset(train_idx), y_train, seed)
    fitted = fit_candidate(selection.chosen, inputs.subset(train_idx), y_train, seed)
    val_scores = predict(fitted, inputs.subset(val_idx))
    route_scores = router.score_embeddings(query_emb[val_idx], [data.queries[i] for i in val_idx])
    val = data.subset(val_idx)
    router.cascade = CascadeCalibration.fit(route_scores, val_scores, val.mean_small(), val.mean_large())
    router.verifier = fitted if y_all is None else fit_candidate(selection.chosen, inputs, y_all, seed)
    router.verifier.info.update(selection.to_dict(), n_train=len(train_idx) if y_all is None else len(data))
    if y_all is not None:
        refit_scores = predict(router.verifier, inputs.subset(val_idx))
        router.cascade.verify_thresholds = same_ranks(router.cascade.verify_thresholds, val_scores, refit_scores)
    router.info["verifier"] = selection.to_dict()
    return val_scores
