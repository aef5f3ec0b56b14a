"""Training a router: encode queries, make labels, fit a head (see :mod:`hybrid_router.recipes`), calibrate on a
held-out split, report metrics, refit the head on all queries."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..core.calibration import Calibration
from ..core.cascade import CascadeCalibration
from ..core.certify import DEFAULT_DELTA, check_delta
from ..core.encoder import DEFAULT_ENCODER, Encoder
from ..core.options import validate_fraction
from ..core.router import HybridRouter
from ..core.verifier import AnswerVerifier
from .data_io import RoutingData
from .depth import DEFAULT_DEPTHS, select_depth
from .evaluation import RoutingReport, apgr_resampled, evaluate_cascade, evaluate_scores, evaluate_with_references
from .labels import make_labels
from .recipes import DEFAULT_RECIPE, RECIPES, HeadFitter, _folds, fit_logistic, fit_selection, run_recipe
from .transfer import query_sources
from .verifier import (
    ROUTE_ONLY,
    VerifierInputs,
    VerifierSelection,
    beats_route_only,
    fit_candidate,
    predict,
    select_verifier,
    verifier_inputs,
)

__all__ = [
    "DEFAULT_DELTA",
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
    #: what a user must hear: a router no better than random, a verifier not kept, a default that saves nothing
    warnings: list[str] = field(default_factory=list)
    #: the scores the calibration tables were certified on (out-of-fold over all queries when there were enough)
    calibration_scores: np.ndarray | None = None
    calibration_verifier_scores: np.ndarray | None = None


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
    delta: float = DEFAULT_DELTA,
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
    (:func:`same_ranks`); without ``refit``, from the validation split. The tables are certified at risk level
    ``delta`` (:mod:`hybrid_router.core.certify`): ``max_quality_drop=d`` then promises an expected drop <= d on new
    queries from the same distribution, with probability >= 1 - delta.

    Honesty: the router's skill is measured on out-of-fold scores (paired bootstrap of APGR against random, stored
    as ``info["skill"]``); a router that cannot be shown better than random is reported loudly (a warning, and
    ``TrainResult.warnings``), and its certified thresholds then buy little. With answers, the verifier reads the
    router's own score too and is kept only when it beats route-only on the validation rows by more than noise
    (:func:`hybrid_router.train.verifier.beats_route_only`); otherwise it is route-only and the cascade degrades to
    routing.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if default_max_quality_drop is not None:
        validate_fraction("default_max_quality_drop", default_max_quality_drop)
    delta = check_delta(delta)
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
    y_all = make_labels(data, labels, t=t_used)[0]
    oof = _route_out_of_fold(fitted.refit, data, emb_all, y_all, seed)
    notes: list[str] = []
    answers = VerifierPlan.make(router, data, emb_all, train_idx, y, seed, progress, oof) if verifier else None
    val_verifier_scores = verify_oof = None
    if answers is not None:
        if oof is not None:
            verify_oof = answers.out_of_fold(y_all)
            answers.decide_keep(verify_oof, oof, data.mean_small(), data.mean_large(), seed)
            if answers.selection.kept is False:
                notes.append(f"verifier: {answers.selection.why}")
                verify_oof = answers.out_of_fold(y_all)
        else:
            answers.decide_keep(None, None, small_q, large_q, seed)
        val_verifier_scores = predict(answers.fit(train_idx, y), answers.inputs.subset(val_idx))
        on_val = CascadeCalibration.fit(val_scores, val_verifier_scores, small_q, large_q)
        reports[-1:-1] = [
            evaluate_scores("verifier", val_verifier_scores, small_q, large_q),
            evaluate_cascade("cascade", on_val, val_scores, val_verifier_scores, small_q, large_q),
        ]
        router.info["verifier"] = answers.selection.to_dict()
    skill = router_skill(
        oof if oof is not None else val_scores,
        data.mean_small() if oof is not None else small_q,
        data.mean_large() if oof is not None else large_q,
        seed,
        "out-of-fold, all queries" if oof is not None else "validation split",
    )
    router.info["skill"] = skill
    if not skill["beats_random"]:
        notes.insert(0, skill["verdict"])
    if refit:
        cal_scores = _refit_and_calibrate(
            router, fitted.refit, answers, data, emb_all, y_all, seed, oof, verify_oof, delta
        )
    else:
        cal_scores = (val_scores, val_verifier_scores)
        _calibrate(router, val_scores, val_verifier_scores, small_q, large_q, delta, seed)
        if answers is not None:
            router.verifier = answers.fit(train_idx, y)
    if default_max_quality_drop is not None:
        found = router.calibration.resolve_max_quality_drop(default_max_quality_drop)
        router.default_threshold = found.threshold
        router.info["default_threshold_rule"] = f"certified: max_quality_drop={default_max_quality_drop:g}"
        if not found.certified:
            smallest = "none" if found.smallest_certified is None else f"{found.smallest_certified:.3f}"
            notes.append(
                f"default threshold: max_quality_drop={default_max_quality_drop:g} cannot be certified with "
                f"{router.calibration.n_queries} calibration queries at delta={delta:g}, so by default every call goes "
                f"to the large model (smallest drop certified with any saving: {smallest})"
            )
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    return TrainResult(
        router,
        t_used,
        float(np.mean(y)),
        reports,
        len(train),
        len(val),
        val_scores,
        val_verifier_scores,
        notes,
        *cal_scores,
    )


#: Skill is shown when the bootstrap lower bound of APGR at this confidence is above random's 0.5.
SKILL_CONFIDENCE = 0.95


def router_skill(scores: np.ndarray, small_q: np.ndarray, large_q: np.ndarray, seed: int, on: str) -> dict:
    """Does the router rank better than random (APGR 0.5)? A bootstrap over queries of held-out APGR."""
    scores, q_s, q_l = (np.asarray(a, np.float64) for a in (scores, small_q, large_q))
    n = len(scores)
    idx = np.random.default_rng(seed).integers(0, n, size=(1000, n))
    apgr = float(apgr_resampled(scores, q_s, q_l)[0])
    lower = float(np.quantile(apgr_resampled(scores[idx], q_s[idx], q_l[idx]), 1.0 - SKILL_CONFIDENCE))
    beats = lower > 0.5
    verdict = f"router skill: APGR {apgr:.3f} on {n} {on} scores, {SKILL_CONFIDENCE:.0%} lower bound {lower:.3f} " + (
        "> 0.5 (random): it ranks better than random"
        if beats
        else "<= 0.5: NOT shown better than random; its thresholds route mostly by cost, not by what it learned"
    )
    return {
        "apgr": round(apgr, 4),
        "apgr_lower": round(lower, 4),
        "confidence": SKILL_CONFIDENCE,
        "n": n,
        "on": on,
        "beats_random": bool(beats),
        "verdict": verdict,
    }


@dataclass
class VerifierPlan:
    """The answer verifier's inputs for every query and the configuration chosen on the training split."""

    inputs: VerifierInputs
    selection: VerifierSelection
    seed: int

    @classmethod
    def make(
        cls, router, data, query_emb, train_idx, y_train, seed, progress, route_scores=None
    ) -> "VerifierPlan | None":
        """None when the data has no small-model answers; ``route_scores`` (out of fold) enable stacking."""
        if data.small_answers is None:
            return None
        answer_emb = router.encoder.encode(data.small_answers, progress=progress)
        inputs = verifier_inputs(data.queries, data.small_answers, query_emb, answer_emb, route_scores)
        return cls(inputs, select_verifier(inputs.subset(train_idx), y_train, seed), seed)

    def decide_keep(self, verifier_scores, route_scores, small_q, large_q, seed) -> None:
        """Keep the chosen verifier only when its out-of-fold scores beat the router's out-of-fold scores by more
        than noise (:func:`beats_route_only`); else switch to route-only. (The candidates were compared on the
        training split, 80% of these rows: the comparison inherits a small winner's curse, which the bootstrap's
        noise allowance dwarfs.)"""
        selection = self.selection
        if selection.chosen == ROUTE_ONLY:
            selection.kept, selection.why = False, "route-only was chosen by cross-validation: the cascade is routing"
        elif verifier_scores is None or "route_score" not in self.inputs.blocks:
            selection.kept = None
            selection.why = f"not tested against route-only (fewer than {MIN_OOF_QUERIES} queries)"
        else:
            selection.kept, selection.why = beats_route_only(verifier_scores, route_scores, small_q, large_q, seed)
            if not selection.kept:
                self.selection = VerifierSelection(ROUTE_ONLY, selection.scores, False, selection.why)

    def out_of_fold(self, labels: np.ndarray) -> np.ndarray:
        """Scores of every query's answer by the chosen configuration fitted without the query's fold."""

        def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            return predict(self.fit(train, labels[train]), self.inputs.subset(test))

        return _out_of_fold(len(labels), self.seed, fit_predict)

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


def _route_out_of_fold(
    refit: HeadFitter, data: RoutingData, emb: np.ndarray, y: np.ndarray, seed: int
) -> np.ndarray | None:
    """Out-of-fold router scores of every query (None below :data:`MIN_OOF_QUERIES` or with one label)."""
    queries = data.queries
    if len(queries) < MIN_OOF_QUERIES or np.ptp(y) == 0:
        return None

    def head_scores(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        head = refit(emb[train], [queries[i] for i in train], y[train], seed)
        return np.clip(head.predict(emb[test], [queries[i] for i in test]), 0.0, 1.0)

    return _out_of_fold(len(queries), seed, head_scores)


def _refit_and_calibrate(
    router: HybridRouter,
    refit: HeadFitter,
    answers: VerifierPlan | None,
    data: RoutingData,
    emb: np.ndarray,
    y: np.ndarray,
    seed: int,
    oof: np.ndarray | None,
    verify_oof: np.ndarray | None,
    delta: float,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Refit the head (and verifier) on all queries; calibrate on out-of-fold scores of all queries (returned).

    Out-of-fold scores cover every query, not only the validation split, so the tables (and the cascade's 2-D
    frontier) are estimated on 5x more rows; they are then carried onto the refitted models' scores by rank.
    """
    queries = data.queries
    n = len(queries)
    router.head = refit(emb, queries, y, seed)
    router.info.update(n_train=n, refit_on_all=True, calibration="out-of-fold" if oof is not None else "refit scores")
    now = router.score_embeddings(emb, queries)
    route_cal = now if oof is None else oof
    verify_now = verify_cal = None
    if answers is not None:
        router.verifier = answers.fit(np.arange(n), y)
        verify_now = predict(router.verifier, answers.inputs)
        verify_cal = verify_now if verify_oof is None else verify_oof
    _calibrate(router, route_cal, verify_cal, data.mean_small(), data.mean_large(), delta, seed)
    router.calibration.thresholds = same_ranks(router.calibration.thresholds, route_cal, now)
    if router.cascade is not None:
        router.cascade.route_thresholds = same_ranks(router.cascade.route_thresholds, route_cal, now)
        router.cascade.verify_thresholds = same_ranks(router.cascade.verify_thresholds, verify_cal, verify_now)
    return route_cal, verify_cal


def _calibrate(router: HybridRouter, route_scores, verify_scores, small_q, large_q, delta, seed) -> None:
    """The router's certified calibration table (and the cascade's, given verifier scores) from labelled scores."""
    router.calibration = Calibration.fit(route_scores, small_q, large_q, delta=delta, seed=seed)
    if verify_scores is not None:
        router.cascade = CascadeCalibration.fit(route_scores, verify_scores, small_q, large_q, delta=delta, seed=seed)


def same_ranks(thresholds: np.ndarray, old_scores: np.ndarray, new_scores: np.ndarray) -> np.ndarray:
    """Thresholds on ``new_scores`` that split the same queries as ``thresholds`` split ``old_scores``.

    Calibration tables are built from the held-out scores of the head fitted without the validation split; the
    head refitted on all data scores the same queries in the same order, but its scale and intercept move (more
    data, the same regularisation), so a raw threshold would no longer send the calibrated share of calls large.
    A threshold that had k of the old scores below it becomes the k-th smallest new score (0 stays 0; one above
    every old score stays above every new one; 1 and above, which send every call large, stay as they are).
    """
    old, new = np.sort(np.asarray(old_scores, np.float64)), np.sort(np.asarray(new_scores, np.float64))
    thresholds = np.asarray(thresholds, np.float64)
    below = np.searchsorted(old, thresholds, side="left")
    above_all = min(float(np.nextafter(new[-1], np.inf)), 1.0)
    mapped = np.where(below < len(new), new[np.minimum(below, len(new) - 1)], above_all)
    mapped = np.where(thresholds <= 0.0, 0.0, np.maximum(mapped, np.nextafter(0.0, 1.0)))
    return np.where(thresholds >= 1.0, thresholds, mapped)
