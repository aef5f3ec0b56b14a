"""``learn``: retrain the router on a routing log and promote it only when it beats the current one.

1. Grade the log if it has no scores (``match`` with references, else ``embed`` when some calls have both
   models' answers; otherwise a clear :class:`LearnError`).
2. Take the scored pairs (calls whose small and large answers are both graded: shadow answers) in log order and
   hold out the **newest** ``holdout`` share: the traffic most like tomorrow's.
3. Train a router on the rest (and the answer verifier when real answers are logged), compare it with the base
   router on the held-out pairs (APGR, cost advantage at a 1% quality drop, large-call share at the base's default
   threshold and at each router's own default), and write it to ``out`` (atomically, see
   :func:`~hybrid_router.core.refresh.promote_router`) only when its held-out APGR beats the base's by more than
   ``min_gain``, or with ``force``. By default the promoted router is then refitted on all pairs, holdout included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.encoder import Encoder
from ..core.engine_encoder import engine_encoder, router_on
from ..core.engines import Engine
from ..core.refresh import promote_router
from ..core.router import CONFIG_FILE, HybridRouter
from ..traffic.exports import ScoredPair, scored_pairs
from ..traffic.log_scoring import SCORER_METRICS, make_scorer, read_scores, score_log, scorer_names
from ..traffic.routing_log import LogTarget, log_name, open_log
from ..train.data_io import RoutingData
from ..train.depth import DEFAULT_DEPTHS
from ..train.evaluation import evaluate_scores, format_table, oracle_scores
from ..train.training import train_router
from .replay import RECORDED_SCORER, is_placeholder

MIN_TRAIN_PAIRS = 20
MIN_HOLDOUT_PAIRS = 10


class LearnError(ValueError):
    """A log ``learn`` cannot learn from (empty, ungraded and ungradable, too few scored pairs)."""


def count_calls(path: LogTarget) -> tuple[int, int]:
    """(answer rows, shadow rows) of a routing log (``LogFileError`` for a file that is not one)."""
    conn = open_log(path)
    try:
        counts = dict(conn.execute("SELECT kind, COUNT(*) FROM calls GROUP BY kind").fetchall())
    finally:
        conn.close()
    return counts.get("answer", 0), counts.get("shadow", 0)


def _has_answer_pairs(path: LogTarget) -> bool:
    conn = open_log(path)
    try:
        row = conn.execute(
            "SELECT 1 FROM calls a JOIN calls s ON s.pair_id = a.pair_id AND s.kind = 'shadow' "
            "WHERE a.kind = 'answer' AND a.answer IS NOT NULL AND s.answer IS NOT NULL "
            "AND a.error IS NULL AND s.error IS NULL LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    return row is not None


def ensure_scored(
    path: LogTarget, scorer: str | None = None, *, references: str | Path | None = None, encoder: Any = None
) -> str:
    """The name of the scorer whose grades to learn from, grading the log first when it has none.

    A scorer the log already has is used as it is; ``scorer`` not yet in the log (or none at all in it) is run
    (``match`` needs ``references``; without a name: ``match`` when references are given, else ``embed``, with
    ``encoder`` when given).
    """
    answers, _ = count_calls(path)
    if answers == 0:
        raise LearnError(f"{log_name(path)}: the routing log has no calls yet")
    names = scorer_names(path)
    if scorer is None and len(names) > 1:
        raise LearnError(f"{log_name(path)}: several scorers in the log ({', '.join(names)}); pick one with --scorer")
    if scorer is None and names:
        return names[0]
    if scorer is not None and scorer in names:
        return scorer
    name = scorer or ("match" if references is not None else "embed")
    if name in ("embed", "judge") and not _has_answer_pairs(path):
        raise LearnError(
            f"{log_name(path)}: the log has no scores and no call with both models' answers to grade with "
            f"{name!r}: log with shadow_rate > 0, or grade it first "
            "(hybrid-llm score-log LOG --scorer match --references FILE)"
        )
    score_log(path, make_scorer(name, references=references, encoder=encoder))
    if name not in scorer_names(path):
        raise LearnError(f"{log_name(path)}: the {name!r} scorer could grade none of the logged calls")
    return name


def _metric(path: LogTarget, scorer: str) -> str:
    if scorer == RECORDED_SCORER:
        raws = [r["raw"] for r in read_scores(path, scorer)[:1] if r["raw"]]
        if raws and raws[0].startswith("recorded "):
            return raws[0][len("recorded ") :]
    return SCORER_METRICS.get(scorer, scorer)


def ordered_pairs(path: LogTarget, scorer: str) -> list[ScoredPair]:
    """The scored pairs of the log, oldest first (by the row id of the user's answer)."""
    return sorted(scored_pairs(path, scorer), key=lambda p: min(p.small["id"], p.large["id"]))


def pairs_to_data(pairs: Sequence[ScoredPair], *, metric: str | None, source: str) -> RoutingData:
    """Routing data (one entry per distinct query) from scored pairs; answers kept when all are real."""
    groups: dict[str, dict[str, Any]] = {}
    for p in pairs:
        g = groups.setdefault(p.query_id, {"query": p.query, "small": [], "large": [], "sa": None, "la": None})
        g["small"].append(p.small_score)
        g["large"].append(p.large_score)
        g["sa"] = g["sa"] or p.small.get("answer")
        g["la"] = g["la"] or p.large.get("answer")

    def answers(key: str) -> list[str] | None:
        values = [g[key] for g in groups.values()]
        ok = all(isinstance(v, str) and v.strip() and not is_placeholder(v) for v in values)
        return values if ok else None

    first = pairs[0] if pairs else None
    return RoutingData(
        query_ids=list(groups),
        queries=[g["query"] for g in groups.values()],
        small_scores=[np.asarray(g["small"], dtype=np.float64) for g in groups.values()],
        large_scores=[np.asarray(g["large"], dtype=np.float64) for g in groups.values()],
        metric=metric,
        small_model=first.small.get("model") if first else None,
        large_model=first.large.get("model") if first else None,
        source=source,
        small_answers=answers("sa"),
        large_answers=answers("la"),
    )


@dataclass
class Comparison:
    """One router measured on the held-out pairs."""

    name: str
    apgr: float
    ca_at_1pct: float | None
    large_at_base_threshold: float | None
    large_at_own_default: float | None
    drop_at_own_default: float | None

    def row(self, base_threshold: float) -> dict[str, float | str]:
        def fmt(v: float | None) -> float | str:
            return "-" if v is None else v

        return {
            "router": self.name,
            "APGR": self.apgr,
            "CA@1%drop": fmt(self.ca_at_1pct),
            f"large@{base_threshold:.3f}": fmt(self.large_at_base_threshold),
            "large@own default": fmt(self.large_at_own_default),
            "drop@own default": fmt(self.drop_at_own_default),
        }


def compare(
    name: str,
    scores: np.ndarray,
    small_q: np.ndarray,
    large_q: np.ndarray,
    *,
    base_threshold: float | None,
    own_threshold: float | None,
) -> Comparison:
    """Held-out metrics of one router's scores (thresholds None: not a thresholded router, e.g. the oracle)."""
    report = evaluate_scores(name, scores, small_q, large_q)
    at_base = None if base_threshold is None else float(np.mean(scores < base_threshold))
    at_own = drop = None
    if own_threshold is not None:
        large = scores < own_threshold
        at_own = float(np.mean(large))
        q_large = float(np.mean(large_q))
        drop = (q_large - float(np.mean(np.where(large, large_q, small_q)))) / max(abs(q_large), 1e-12)
    return Comparison(name, report.apgr, report.cost_advantage_at_drop[0.01], at_base, at_own, drop)


@dataclass
class LearnResult:
    """What ``learn`` measured and decided."""

    promoted: bool
    reason: str
    scorer: str
    n_pairs: int
    n_train: int
    n_holdout: int
    base: Comparison
    new: Comparison
    others: list[Comparison] = field(default_factory=list)
    base_threshold: float = 0.5
    out: Path | None = None
    router: HybridRouter | None = None

    def table(self) -> str:
        rows = [c.row(self.base_threshold) for c in (self.others[:1] + [self.base, self.new] + self.others[1:])]
        return format_table(rows)

    def summary(self) -> str:
        head = (
            f"learned from {self.n_pairs} scored pairs ({self.scorer}): trained on the oldest {self.n_train}, "
            f"compared on the newest {self.n_holdout}"
        )
        return f"{head}\n{self.table()}\n{self.reason}"


def load_base(base: HybridRouter | str | Path | None, out: str | Path) -> tuple[HybridRouter, str]:
    """The router to beat: ``base`` (a router or folder), else the router already in ``out``, else the shipped one."""
    if isinstance(base, HybridRouter):
        return base, "base"
    if base is not None:
        return HybridRouter.load(base), f"base ({base})"
    if (Path(out) / CONFIG_FILE).is_file():
        return HybridRouter.load(out), f"current ({out})"
    return HybridRouter.default(), "shipped default"


def learn(
    log: LogTarget,
    out: str | Path,
    *,
    base: HybridRouter | str | Path | None = None,
    holdout: float = 0.2,
    force: bool = False,
    scorer: str | None = None,
    references: str | Path | None = None,
    labels: str = "det",
    encoder: Encoder | str | None = None,
    depths: Sequence[int | None] | None = DEFAULT_DEPTHS,
    verifier: bool = True,
    min_gain: float = 0.0,
    refit_all: bool = True,
    seed: int = 0,
    engine: Engine | None = None,
) -> LearnResult:
    """Learn from ``log``; writes ``out`` only when the new router is better on the newest pairs (or ``force``).

    With an ``engine`` (:mod:`hybrid_router.core.engines`, e.g. Ray), every text is embedded there (grading,
    training, both routers' held-out scores; ``encoder``, when given, should be on it too); the numbers, and so
    the decision, are those of the local run.
    """
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in (0, 1), got {holdout!r}")
    name = ensure_scored(log, scorer, references=references, encoder=engine_encoder(engine))
    shown = log_name(log)  # a URL's password never reaches messages or the router's info
    pairs = ordered_pairs(log, name)
    n_hold = int(round(len(pairs) * holdout))
    if n_hold < MIN_HOLDOUT_PAIRS or len(pairs) - n_hold < MIN_TRAIN_PAIRS:
        raise LearnError(
            f"{shown}: {len(pairs)} pair(s) with both answers scored by {name!r}; learning needs at least "
            f"{MIN_TRAIN_PAIRS} to train and {MIN_HOLDOUT_PAIRS} held out (holdout {holdout:g}): log more calls "
            "with a shadow_rate > 0"
        )
    metric = _metric(log, name)
    train_pairs, hold_pairs = pairs[:-n_hold], pairs[-n_hold:]
    train_data = pairs_to_data(train_pairs, metric=metric, source=f"{shown} (older {len(train_pairs)} pairs)")
    hold = pairs_to_data(hold_pairs, metric=metric, source=f"{shown} (newest {n_hold} pairs)")
    base_router, base_name = load_base(base, out)
    router_on(base_router, engine)
    enc = encoder if encoder is not None else (engine_encoder(engine) or Encoder())
    kwargs = dict(labels=labels, encoder=enc, depths=depths, verifier=verifier, seed=seed)
    trained = train_router(train_data, **kwargs).router
    small_q, large_q = hold.mean_small(), hold.mean_large()
    base_t = base_router.default_threshold
    base_cmp = compare(
        base_name, base_router.score_texts(hold.queries), small_q, large_q, base_threshold=base_t, own_threshold=base_t
    )
    new_cmp = compare(
        "new",
        trained.score_texts(hold.queries),
        small_q,
        large_q,
        base_threshold=base_t,
        own_threshold=trained.default_threshold,
    )
    oracle = compare(
        "oracle", oracle_scores(small_q, large_q), small_q, large_q, base_threshold=None, own_threshold=None
    )
    rng = np.random.default_rng(seed)
    random_apgr = float(
        np.mean([evaluate_scores("random", rng.random(len(small_q)), small_q, large_q).apgr for _ in range(20)])
    )
    random_cmp = Comparison("random (mean of 20)", random_apgr, None, None, None, None)
    gain = new_cmp.apgr - base_cmp.apgr
    better = gain > min_gain
    promoted = better or force
    if promoted:
        final = trained
        if refit_all:
            all_data = pairs_to_data(pairs, metric=metric, source=f"{shown} ({len(pairs)} pairs)")
            final = train_router(all_data, **kwargs).router
        final.info["learned"] = {
            "log": shown,
            "scorer": name,
            "pairs": len(pairs),
            "holdout_pairs": n_hold,
            "holdout_apgr": {"new": new_cmp.apgr, "base": base_cmp.apgr},
            "refit_on_all_pairs": refit_all,
            "forced": force and not better,
        }
        promote_router(final, out)
        what = "better" if better else "NOT better, written because of --force"
        reason = (
            f"promoted: held-out APGR {new_cmp.apgr:.3f} vs {base_cmp.apgr:.3f} ({gain:+.3f}, {what}); wrote {out}"
            + (f" (refitted on all {len(pairs)} pairs)" if refit_all else "")
        )
        router = final
    else:
        reason = (
            f"not promoted: held-out APGR {new_cmp.apgr:.3f} vs {base_cmp.apgr:.3f} ({gain:+.3f}, needs more than "
            f"{min_gain:+.3f}); {out} left unchanged (--force writes it anyway)"
        )
        router = None
    return LearnResult(
        promoted,
        reason,
        name,
        len(pairs),
        len(train_pairs),
        n_hold,
        base_cmp,
        new_cmp,
        [random_cmp, oracle],
        base_t,
        Path(out) if promoted else None,
        router,
    )
