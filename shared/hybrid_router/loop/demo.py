"""``hybrid-llm demo --learn``: a short replay in which the router learns a workload it has not seen.

A router trained on other workloads (600 MMLU + the 80 MT-Bench queries; 3 encoder layers) routes shipped GSM8K
traffic, replayed through the real routing path with shadow answers at rate 0.5. After every ``every`` (200)
queries ``learn`` retrains on the log with ``holdout`` 0.3 and decides as it does on real traffic: the newest 30%
of the scored queries are held out, and the new router is promoted only when the paired test says it is better at
95% confidence, it passes the cost check and it keeps the base's capabilities (see :mod:`hybrid_router.loop.learn`).
Below :data:`~hybrid_router.loop.learn.MIN_HOLDOUT_QUERIES` (50) held-out queries ``learn`` decides nothing: with
about 100 scored pairs a round, that is the first round (about 30 held out); from the second round on (about 60,
90, 120 held out) it decides. Each round prints the decision in a few words (promoted or kept, and why, with the
gain and its lower bound; or how many more scored queries are needed) and, on a fixed set of 300 other GSM8K
queries, the share of calls the current router sends to the small model at a 1% and a 5% quality drop (the
savings) and its APGR. Offline: shipped data, no model calls; under a minute on one CPU thread.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from ..train.data import shipped_path
from ..train.data_io import RoutingData, load_routing_data
from ..train.embedding_cache import CachedEncoder
from ..train.evaluation import evaluate_scores
from ..train.training import train_router
from .learn import (
    MIN_HOLDOUT_QUERIES,
    LearnError,
    LearnResult,
    holdout_size,
    learn,
    ordered_pairs,
    queries_needed,
)
from .replay import RECORDED_SCORER, replay_data


def _pooled(parts: list[RoutingData]) -> RoutingData:
    out = RoutingData([], [], [], [], source="other workloads")
    for k, d in enumerate(parts):
        out.query_ids += [f"{k}:{q}" for q in d.query_ids]
        out.queries += d.queries
        out.small_scores += d.small_scores
        out.large_scores += d.large_scores
    return out


def _decision(res: LearnResult) -> str:
    """The decision of one ``learn`` run in a few words."""
    t = res.test
    numbers = f"gain {t.gain:+.2f}, lower bound {t.lower_bound:+.2f}" if t is not None else ""
    if res.promoted:
        return f"promoted ({numbers})" if res.better else f"promoted with force ({numbers})"
    failed = []
    if t is not None and not t.better:
        failed.append("test failed")
    if res.cost is not None and not res.cost.ok:
        failed.append("cost check failed")
    new_caps = res.capabilities.get("new", {})
    base_caps = next((c for who, c in res.capabilities.items() if who != "new"), {})
    missing = [name for name, has in base_caps.items() if has and not new_caps.get(name)]
    if missing:
        failed.append("no " + " or ".join(missing))
    return f"kept: {', '.join(failed) or 'not better'} ({numbers})"


def run_learn_demo(
    *,
    rounds: int = 4,
    every: int = 200,
    shadow_rate: float = 0.5,
    holdout: float = 0.3,
    test_queries: int = 300,
    echo: Callable = print,
) -> list[dict]:
    """Run the demo, printing one line per round as it is done; returns the rounds' measurements.

    ``holdout`` is ``learn``'s held-out share of the scored queries; ``test_queries`` GSM8K queries outside the
    stream are the fixed set every round's router is measured on.
    """
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hybrid-llm-learn-demo-") as tmp, warnings.catch_warnings():
        # the demo measures savings at fixed quality drops, not at a router's default threshold: the warning that a
        # few hundred calibration queries cannot certify a 1% default (so that default sends everything large) is
        # true and beside the point here
        warnings.filterwarnings("ignore", message="default threshold", category=UserWarning)
        work = Path(tmp)
        enc = CachedEncoder(cache_dir=work / "emb", layers=3)
        mmlu = load_routing_data(shipped_path("routellm_mmlu"))
        mmlu = mmlu.subset(np.random.default_rng(0).permutation(len(mmlu))[:600])
        mt = load_routing_data(shipped_path("routellm_mtbench_t1"))
        gsm = load_routing_data(shipped_path("routellm_gsm8k_answers"))
        if test_queries + rounds * every > len(gsm):
            raise ValueError(
                f"{test_queries} test queries + {rounds} rounds of {every} exceed {len(gsm)} GSM8K queries"
            )
        order = np.random.default_rng(0).permutation(len(gsm))
        hold = gsm.subset(order[:test_queries])
        stream = gsm.subset(order[test_queries : test_queries + rounds * every])
        echo(f"encoding {len(mmlu) + len(mt) + len(hold) + len(stream)} queries (3 encoder layers) ...")
        enc.encode(mmlu.queries + mt.queries + hold.queries + stream.queries, batch_size=32)
        current = train_router(_pooled([mmlu, mt]), encoder=enc, depths=None, verifier=False, seed=0).router
        small_q, large_q = hold.mean_small(), hold.mean_large()

        def measure(router) -> dict:
            rep = evaluate_scores("r", router.score_texts(hold.queries), small_q, large_q)
            return {
                "apgr": rep.apgr,
                "small_at_1": rep.cost_advantage_at_drop[0.01],
                "small_at_5": rep.cost_advantage_at_drop[0.05],
            }

        echo(
            f"start: a router trained on MMLU + MT-Bench only; replaying GSM8K traffic in rounds of {every} queries, "
            f"shadow rate {shadow_rate:g}; after each round 'learn' holds out the newest {holdout:.0%} of the scored "
            f"queries (it needs {MIN_HOLDOUT_QUERIES}) and promotes only on a passed test at 95% confidence; "
            f"savings and APGR measured on {test_queries} other GSM8K queries"
        )
        header = (
            f"{'queries':>7}  {'pairs':>5}  {'held out':>8}  {'small calls @1% drop':>20}  {'@5% drop':>8}  "
            f"{'APGR':>5}  learn"
        )
        echo(header)
        echo("-" * (len(header) + 40))

        def show(row: dict) -> None:
            echo(
                f"{row['queries']:>7}  {row['pairs']:>5}  {row['held_out']:>8}  {row['small_at_1']:>20.0%}  "
                f"{row['small_at_5']:>8.0%}  {row['apgr']:>5.3f}  {row['step']}"
            )

        rows = [{"queries": 0, "pairs": 0, "held_out": "-", "step": "(starting router)", **measure(current)}]
        show(rows[-1])
        log = work / "traffic.db"
        for r in range(rounds):
            chunk = stream.subset(range(r * every, (r + 1) * every))
            replay_data(chunk, log, current, shadow_rate=shadow_rate, seed=r)
            try:
                res = learn(
                    log,
                    work / "router",
                    base=current,
                    holdout=holdout,
                    encoder=enc,
                    depths=None,
                    verifier=False,
                    seed=0,
                )
                pairs, held, step = res.n_pairs, res.n_holdout_queries, _decision(res)
                if res.promoted:
                    current = res.router
            except LearnError:
                scored = ordered_pairs(log, RECORDED_SCORER)
                n_queries = len({p.query_id for p in scored})
                more = max(queries_needed(holdout, MIN_HOLDOUT_QUERIES) - n_queries, 1)
                pairs, held = len(scored), holdout_size(n_queries, holdout)
                step = f"too few pairs: {more} more scored queries needed"
            rows.append(
                {"queries": (r + 1) * every, "pairs": pairs, "held_out": held, "step": step, **measure(current)}
            )
            show(rows[-1])
        echo(
            f"small calls = share of the {test_queries} test calls the current router sends to the small model within "
            f"that quality drop (the savings); held out = distinct queries 'learn' compared the routers on; "
            f"{time.perf_counter() - started:.0f}s"
        )
    return rows
