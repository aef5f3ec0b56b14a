"""``learn``: retrain the router on a routing log and promote it only when a paired test says it beats the current one.

1. Grade the log if it has no scores (``match`` with references, else ``embed`` when some calls have both
   models' answers; otherwise a clear :class:`LearnError`).
2. Take the scored pairs (calls whose small and large answers are both graded: shadow answers), group them by
   query (``query_id``: a query asked again is one group), order the groups by their newest pair and hold out the
   **newest** ``holdout`` share of the distinct queries: the traffic most like tomorrow's. A repeated query is
   never on both sides of the split, so a head that memorises it gains nothing in the comparison. Fewer than
   :data:`MIN_HOLDOUT_QUERIES` held-out queries or :data:`MIN_TRAIN_PAIRS` training pairs is a :class:`LearnError`
   that says how many more scored queries are needed (``force`` learns from as few as
   :data:`FORCE_MIN_HOLDOUT_QUERIES` held out).
3. Train a router on the rest, and the answer verifier when real answers are logged: training queries whose small
   answer is empty or a replay placeholder are dropped (and counted) when at least half have a real one, so one
   empty answer does not cost the verifier.
4. Measure both routers on the held-out queries (APGR, cost advantage at a 1% quality drop, large-call share at
   the base's default threshold and at each router's own default) and decide. The new router is promoted only when
   all three checks pass:

   - **the paired test** (:func:`~hybrid_router.loop.promotion.promotion_test`): the one-sided lower bound at
     ``confidence`` (95%) of ``APGR_new - APGR_base``, from a paired bootstrap over the held-out queries, is above
     ``min_gain``;
   - **cost at the base's operating point** (:func:`~hybrid_router.loop.promotion.cost_check`): the new router
     reaches the quality the base reaches at its default threshold with no more large calls than the base (within
     :data:`~hybrid_router.loop.promotion.COST_TOLERANCE`, 2 points of the held-out calls);
   - **capabilities**: when the base router has an answer verifier or a cascade table (``strategy="cascade"``),
     the new one has them too.

   ``force`` writes the new router whatever the checks say (recorded as forced). The decision is printed as a
   table and appended, promoted or not, as one JSON line to ``<out>.learn.jsonl`` beside the router folder.

What a promotion guarantees, and what it does not:

- On queries like the held-out ones (the newest traffic), a router no better than the base by ``min_gain`` is
  promoted about ``1 - confidence`` of the time or less (simulated at 95%: 1.8% to 5.6%, within simulation error
  of 5%, for an equally good one, and at most 2.1% for one worse by 0.05 APGR, on 25 to 500 held-out queries; see
  :data:`MIN_HOLDOUT_QUERIES`). Nothing is claimed for traffic unlike the newest, and a true gain smaller than the
  test can see on the holdout is kept out: with ``min_gain=0``, a gain of 0.05 APGR is promoted 6% of the time on
  50 held-out queries and 38% on 500.
- What is written is what was measured: by default the very router measured on the holdout (trained on the older
  queries). With ``refit_all`` the same configuration (recipe, encoder depth, label relaxation; and the ``auto``
  recipe's head and the verifier's inputs must come out the same, or the measured router is written instead) is
  fitted on all pairs; the reason and ``router.info["learned"]`` then say the written router is a refit that was
  not measured on the holdout.
- A router with a verifier or a cascade table is never replaced by one without (unless forced).
- The cost check and the comparison table are point estimates on the holdout; only the APGR gain is tested.
"""

from __future__ import annotations

import datetime as _dt
import json
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
from ..train.recipes import DEFAULT_RECIPE
from ..train.training import train_router
from .promotion import CostCheck, PromotionTest, cost_check, promotion_test
from .replay import RECORDED_SCORER, is_placeholder

MIN_TRAIN_PAIRS = 20

#: Distinct held-out queries ``learn`` needs before it decides anything (``force``: :data:`FORCE_MIN_HOLDOUT_QUERIES`).
#:
#: The paired test is calibrated at every size simulated, so the minimum is not what keeps a bad router out; it
#: keeps ``learn`` from deciding where it cannot see. Simulation (``promotion_test`` as shipped: 95% confidence,
#: ``min_gain`` 0, 2,000 resamples; 1,000 holdouts per cell drawn from the shipped labels, all 1,319 GSM8K queries
#: and 1,700 MMLU ones; router scores are the oracle's plus Gaussian noise, 0.5 correlated between the two routers;
#: the base's noise gives APGR 0.693 on the pool, the others 0.643, 0.693 and 0.833). Share of holdouts on which
#: the candidate is promoted:
#:
#: ======================================  =====  =====  =====  =====  =====
#: held-out queries                           25     50    100    200    500
#: ======================================  =====  =====  =====  =====  =====
#: candidate worse by 0.05 APGR            0.014  0.016  0.021  0.007  0.002
#: candidate as good (true gain 0)         0.018  0.039  0.053  0.056  0.046
#: candidate better by 0.05                0.017  0.064  0.118  0.183  0.378
#: candidate better by 0.14                0.063  0.212  0.467  0.780  0.989
#: old rule (point estimate), worse 0.05   0.399  0.347  0.283  0.227  0.100
#: holdouts with no large-vs-small gap     0.07   0.013  0.001  0      0
#: ======================================  =====  =====  =====  =====  =====
#:
#: (MC standard error about 0.007 at 0.05.) At 25 held-out queries the test is valid but blind: a router 0.14 APGR
#: better is promoted 6% of the time, hardly more than the 2% of an equally good one, and 7% of holdouts have no
#: positive mean gain of the large model over the small one, where APGR cannot rank routers at all. At 50 the same
#: router is promoted 21% of the time (5 times the false rate) and 1% of holdouts lack a gap. 50 is therefore the
#: least holdout on which a scheduled run is worth its decision; 100 to 200 is where moderate gains start to pass
#: (log more shadow answers or raise ``--holdout``).
MIN_HOLDOUT_QUERIES = 50

#: With ``force`` a holdout this small is still measured (and the decision printed); below it nothing is.
FORCE_MIN_HOLDOUT_QUERIES = 10


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


def _pair_key(pair: ScoredPair) -> int:
    return min(pair.small["id"], pair.large["id"])


def ordered_pairs(path: LogTarget, scorer: str) -> list[ScoredPair]:
    """The scored pairs of the log, oldest first (by the row id of the user's answer)."""
    return sorted(scored_pairs(path, scorer), key=_pair_key)


def holdout_size(n_queries: int, holdout: float) -> int:
    """Distinct queries held out of ``n_queries`` at a ``holdout`` share."""
    return int(round(n_queries * holdout))


def split_by_query(pairs: Sequence[ScoredPair], holdout: float) -> tuple[list[ScoredPair], list[ScoredPair]]:
    """(training pairs, held-out pairs), each in the order given: every pair of a query (``query_id``) on one side.

    The queries are ordered by their newest pair (by row id) and the newest ``holdout`` share of the distinct
    queries is held out, so a query asked long ago and again today is held out with all its pairs.
    """
    newest: dict[str, int] = {}
    for p in pairs:
        newest[p.query_id] = max(newest.get(p.query_id, -1), _pair_key(p))
    order = sorted(newest, key=newest.__getitem__)
    held = set(order[len(order) - holdout_size(len(order), holdout) :])
    return [p for p in pairs if p.query_id not in held], [p for p in pairs if p.query_id in held]


def queries_needed(holdout: float, min_holdout: int, min_train: int = MIN_TRAIN_PAIRS) -> int:
    """The fewest distinct queries (one pair each) whose split at ``holdout`` has both minimums."""
    n = max(min_holdout, 1)
    while holdout_size(n, holdout) < min_holdout or n - holdout_size(n, holdout) < min_train:
        n += 1
    return n


def _real(answer: Any) -> bool:
    return isinstance(answer, str) and bool(answer.strip()) and not is_placeholder(answer)


def pairs_to_data(pairs: Sequence[ScoredPair], *, metric: str | None, source: str) -> RoutingData:
    """Routing data (one entry per distinct query) from scored pairs; answers kept when all are real.

    A query's answer is the first real one among its pairs (an empty or placeholder answer only when none is).
    """
    groups: dict[str, dict[str, Any]] = {}
    for p in pairs:
        g = groups.setdefault(p.query_id, {"query": p.query, "small": [], "large": [], "sa": None, "la": None})
        g["small"].append(p.small_score)
        g["large"].append(p.large_score)
        for key, call in (("sa", p.small), ("la", p.large)):
            if not _real(g[key]) and call.get("answer") is not None:
                g[key] = call.get("answer")

    def answers(key: str) -> list[str] | None:
        values = [g[key] for g in groups.values()]
        return values if all(_real(v) for v in values) else None

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


def training_data(
    pairs: Sequence[ScoredPair], *, metric: str | None, source: str, verifier: bool = True
) -> tuple[RoutingData, str]:
    """Routing data to train on, and a note on what was done about missing small answers ("" when nothing).

    With ``verifier`` and some queries lacking a real small answer (empty, or a replay placeholder), those queries
    are dropped when the others are at least half of them and at least :data:`MIN_TRAIN_PAIRS`, so the verifier is
    trained on the answered ones; otherwise all queries are kept and no verifier can be trained.
    """
    data = pairs_to_data(pairs, metric=metric, source=source)
    if not verifier or data.small_answers is not None or not pairs:
        return data, ""
    answered = {p.query_id for p in pairs if _real(p.small.get("answer"))}
    total = len(data)
    if not answered:
        return data, f"no verifier: none of the {total} training queries has a real small answer logged"
    if len(answered) >= MIN_TRAIN_PAIRS and 2 * len(answered) >= total:
        kept = [p for p in pairs if p.query_id in answered]
        dropped = total - len(answered)
        data = pairs_to_data(kept, metric=metric, source=f"{source}, {dropped} without a real small answer dropped")
        return data, (
            f"dropped {dropped} of {total} training queries without a real small answer (empty or placeholder); "
            f"the router and its verifier trained on the other {len(answered)}"
        )
    return data, (
        f"no verifier: only {len(answered)} of {total} training queries have a real small answer "
        f"(dropping the others needs at least half of them and {MIN_TRAIN_PAIRS})"
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


def capabilities(router: HybridRouter) -> dict[str, bool]:
    """What a router can serve beyond ``strategy="route"``."""
    return {"verifier": router.verifier is not None, "cascade table": router.cascade is not None}


def missing_capabilities(base: HybridRouter, new: HybridRouter) -> list[str]:
    """Capabilities the base router has and the new one lacks."""
    have = capabilities(new)
    return [name for name, has in capabilities(base).items() if has and not have[name]]


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
    test: PromotionTest | None = None
    cost: CostCheck | None = None
    n_queries: int = 0
    n_train_queries: int = 0
    n_holdout_queries: int = 0
    capabilities: dict[str, dict[str, bool]] = field(default_factory=dict)
    better: bool = False
    written: str | None = None
    record: Path | None = None

    def table(self) -> str:
        rows = [c.row(self.base_threshold) for c in (self.others[:1] + [self.base, self.new] + self.others[1:])]
        parts = [format_table(rows)]
        if self.test is not None:
            parts.append(format_table([self.test.row()]))
        if self.cost is not None:
            parts.append(format_table([self.cost.row()]))
        if self.capabilities:
            caps = [
                {"router": who, **{k: "yes" if v else "no" for k, v in caps.items()}}
                for who, caps in self.capabilities.items()
            ]
            parts.append(format_table(caps))
        return "\n\n".join(parts)

    def summary(self) -> str:
        head = (
            f"learned from {self.n_pairs} scored pairs ({self.n_queries} distinct queries, {self.scorer}): trained "
            f"on the oldest {self.n_train} pairs ({self.n_train_queries} queries), compared on the newest "
            f"{self.n_holdout} pairs ({self.n_holdout_queries} held-out queries)"
        )
        tail = f"\nrecorded in {self.record}" if self.record is not None else ""
        return f"{head}\n{self.table()}\n{self.reason}{tail}"


def record_path(out: str | Path) -> Path:
    """``<out>.learn.jsonl``: the decision log beside the router folder ``out``."""
    folder = Path(out)
    if not folder.name:
        folder = folder.resolve()
    return folder.with_name(folder.name + ".learn.jsonl")


def _record(out: str | Path, entry: dict[str, Any]) -> Path:
    path = record_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {"time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **entry}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def load_base(base: HybridRouter | str | Path | None, out: str | Path) -> tuple[HybridRouter, str]:
    """The router to beat: ``base`` (a router or folder), else the router already in ``out``, else the shipped one."""
    if isinstance(base, HybridRouter):
        return base, "base"
    if base is not None:
        return HybridRouter.load(base), f"base ({base})"
    if (Path(out) / CONFIG_FILE).is_file():
        return HybridRouter.load(out), f"current ({out})"
    return HybridRouter.default(), "shipped default"


def _configuration(router: HybridRouter) -> dict[str, Any]:
    """What a refit must keep: recipe, encoder depth, labels, and the choices made by cross-validation."""
    return {
        "recipe": router.info.get("recipe"),
        "encoder_layers": router.encoder_layers,
        "label_mode": router.label_mode,
        "relaxation": round(router.relaxation, 12),
        "head": (router.info.get("selection") or {}).get("chosen"),
        "verifier": (router.info.get("verifier") or {}).get("chosen") if router.verifier is not None else None,
        "cascade": router.cascade is not None,
    }


def _refit(measured: HybridRouter, data: RoutingData, *, verifier: bool, seed: int) -> HybridRouter:
    """The measured router's configuration fitted on ``data`` (no encoder-depth search, same label relaxation)."""
    return train_router(
        data,
        labels=measured.label_mode,
        relaxation=measured.relaxation if measured.label_mode == "trans" else None,
        recipe=measured.info.get("recipe", DEFAULT_RECIPE),
        encoder=measured.encoder,
        depths=None,
        verifier=verifier,
        seed=seed,
    ).router


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
    confidence: float = 0.95,
    refit_all: bool = False,
    seed: int = 0,
    engine: Engine | None = None,
) -> LearnResult:
    """Learn from ``log``; writes ``out`` only when the new router passes the checks (see the module docstring).

    ``force`` writes it anyway (and measures a holdout down to :data:`FORCE_MIN_HOLDOUT_QUERIES` queries).
    ``refit_all`` writes a refit of the measured configuration on all pairs instead of the measured router.
    Every decision, including a refusal for too few pairs, is appended to ``<out>.learn.jsonl``.

    With an ``engine`` (:mod:`hybrid_router.core.engines`, e.g. Ray), every text is embedded there (grading,
    training, both routers' held-out scores; ``encoder``, when given, should be on it too); the numbers, and so
    the decision, are those of the local run.
    """
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in (0, 1), got {holdout!r}")
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence!r}")
    out_existed = Path(out).exists()
    name = ensure_scored(log, scorer, references=references, encoder=engine_encoder(engine))
    shown = log_name(log)  # a URL's password never reaches messages or the router's info
    pairs = ordered_pairs(log, name)
    train_pairs, hold_pairs = split_by_query(pairs, holdout)
    n_queries = len({p.query_id for p in pairs})
    n_hold_q = len({p.query_id for p in hold_pairs})
    n_train_q = n_queries - n_hold_q
    min_hold = FORCE_MIN_HOLDOUT_QUERIES if force else MIN_HOLDOUT_QUERIES
    if n_hold_q < min_hold or len(train_pairs) < MIN_TRAIN_PAIRS:
        more = max(queries_needed(holdout, min_hold) - n_queries, 1)
        message = (
            f"{shown}: {len(pairs)} pair(s) with both answers scored by {name!r}, {n_queries} distinct queries: "
            f"{n_hold_q} held out (holdout {holdout:g}) and {len(train_pairs)} pair(s) to train; learning needs at "
            f"least {min_hold} distinct queries held out and {MIN_TRAIN_PAIRS} pairs to train: {more} more scored "
            "distinct queries needed (log more calls with a shadow_rate > 0"
            + (f", or --force to decide on as few as {FORCE_MIN_HOLDOUT_QUERIES} held out)" if not force else ")")
        )
        _record(out, {"log": shown, "out": str(out), "promoted": False, "refused": "too few pairs", "reason": message})
        raise LearnError(message)
    metric = _metric(log, name)
    train_data, data_note = training_data(
        train_pairs,
        metric=metric,
        source=f"{shown} (older {len(train_pairs)} pairs, {n_train_q} queries)",
        verifier=verifier,
    )
    hold = pairs_to_data(hold_pairs, metric=metric, source=f"{shown} (newest {len(hold_pairs)} pairs)")
    base_router, base_name = load_base(base, out)
    router_on(base_router, engine)
    enc = encoder if encoder is not None else (engine_encoder(engine) or Encoder())
    trained = train_router(train_data, labels=labels, encoder=enc, depths=depths, verifier=verifier, seed=seed).router
    small_q, large_q = hold.mean_small(), hold.mean_large()
    base_t = base_router.default_threshold
    base_scores = base_router.score_texts(hold.queries)
    new_scores = trained.score_texts(hold.queries)
    base_cmp = compare(base_name, base_scores, small_q, large_q, base_threshold=base_t, own_threshold=base_t)
    new_cmp = compare(
        "new", new_scores, small_q, large_q, base_threshold=base_t, own_threshold=trained.default_threshold
    )
    oracle = compare(
        "oracle", oracle_scores(small_q, large_q), small_q, large_q, base_threshold=None, own_threshold=None
    )
    rng = np.random.default_rng(seed)
    random_apgr = float(
        np.mean([evaluate_scores("random", rng.random(len(small_q)), small_q, large_q).apgr for _ in range(20)])
    )
    random_cmp = Comparison("random (mean of 20)", random_apgr, None, None, None, None)

    test = promotion_test(
        base_scores, new_scores, small_q, large_q, confidence=confidence, min_gain=min_gain, seed=seed
    )
    cost = cost_check(base_scores, new_scores, small_q, large_q, base_t)
    missing = missing_capabilities(base_router, trained)
    failures = []
    if not test.better:
        failures.append(
            f"the gain {test.gain:+.3f} has a lower bound of {test.lower_bound:+.3f} at {confidence:.0%} "
            f"confidence on {test.n} held-out queries, not above {min_gain:+.3f}"
            + (f" ({test.note})" if test.note else " (within noise or worse)")
        )
    if not cost.ok:
        needs = "never reaches it" if cost.new_large is None else f"needs {cost.new_large:.1%} large to reach it"
        failures.append(
            f"at the base's default threshold {base_t:.3f} the base reaches quality {cost.base_quality:.3f} with "
            f"{cost.base_large:.1%} of calls large; the new router {needs} (tolerance {cost.tolerance:.0%})"
        )
    if missing:
        failures.append(
            f"the base router has {' and '.join('a ' + m for m in missing)} (strategy='cascade'), the new one does "
            "not" + (f" ({data_note})" if data_note else "")
        )
    better = not failures
    promoted = better or force
    measured = (
        f"held-out APGR {new_cmp.apgr:.3f} vs {base_cmp.apgr:.3f} (gain {test.gain:+.3f}, lower bound "
        f"{test.lower_bound:+.3f} at {confidence:.0%} on {test.n} held-out queries)"
    )
    written = None
    router = None
    if promoted:
        final, written = trained, "the router measured on the holdout"
        refit_note = ""
        if refit_all:
            all_data, _ = training_data(
                pairs, metric=metric, source=f"{shown} ({len(pairs)} pairs, {n_queries} queries)", verifier=verifier
            )
            refit = _refit(trained, all_data, verifier=verifier, seed=seed)
            changed = {
                key: (was, now)
                for (key, was), now in zip(_configuration(trained).items(), _configuration(refit).values())
                if was != now
            }
            if not changed:
                final = refit
                written = (
                    f"a refit of the measured configuration on all {len(pairs)} pairs, NOT measured on the holdout"
                )
            else:
                refit_note = (
                    "; the refit on all pairs chose another configuration ("
                    + ", ".join(f"{key} {was} -> {now}" for key, (was, now) in changed.items())
                    + "), so the measured router was written instead"
                )
        final.info["learned"] = {
            "log": shown,
            "scorer": name,
            "pairs": len(pairs),
            "queries": n_queries,
            "holdout_pairs": len(hold_pairs),
            "holdout_queries": n_hold_q,
            "holdout_apgr": {"new": new_cmp.apgr, "base": base_cmp.apgr},
            "base": base_name,
            "test": test.to_dict(),
            "cost_check": cost.to_dict(),
            "missing_capabilities": missing,
            "training_data": data_note,
            "refit_on_all_pairs": final is not trained,
            "measured_on_holdout": final is trained,
            "written": written,
            "refit_refused": refit_note.removeprefix("; ") or None,
            "forced": force and not better,
        }
        promote_router(final, out)
        if better:
            reason = f"promoted: {measured}; cost check passed; wrote {out}: {written}{refit_note}"
        else:
            reason = f"promoted with --force, NOT better: {'; '.join(failures)}; wrote {out}: {written}{refit_note}"
        router = final
    else:
        unchanged = f"{out} left unchanged" if out_existed else f"nothing written to {out}"
        reason = f"not promoted: {'; '.join(failures)}; {unchanged} (--force writes it anyway)"
    if data_note:
        reason += f"\ntraining data: {data_note}"
    caps = {base_name: capabilities(base_router), "new": capabilities(trained)}
    record = _record(
        out,
        {
            "log": shown,
            "out": str(out),
            "scorer": name,
            "promoted": promoted,
            "better": better,
            "forced": force and not better,
            "reason": reason,
            "pairs": len(pairs),
            "queries": n_queries,
            "train_pairs": len(train_pairs),
            "holdout_pairs": len(hold_pairs),
            "holdout_queries": n_hold_q,
            "base": base_name,
            "apgr": {"base": base_cmp.apgr, "new": new_cmp.apgr, "oracle": oracle.apgr, "random": random_apgr},
            "test": test.to_dict(),
            "cost_check": cost.to_dict(),
            "capabilities": caps,
            "training_data": data_note,
            "written": written,
            "seed": seed,
        },
    )
    return LearnResult(
        promoted,
        reason,
        name,
        len(pairs),
        len(train_pairs),
        len(hold_pairs),
        base_cmp,
        new_cmp,
        [random_cmp, oracle],
        base_t,
        Path(out) if promoted else None,
        router,
        test=test,
        cost=cost,
        n_queries=n_queries,
        n_train_queries=n_train_q,
        n_holdout_queries=n_hold_q,
        capabilities=caps,
        better=better,
        written=written,
        record=record,
    )
