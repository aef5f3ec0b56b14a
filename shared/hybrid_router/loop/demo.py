"""``hybrid-llm demo --learn``: a short replay in which the router learns a workload it has not seen.

A router trained on other workloads (600 MMLU + the 80 MT-Bench queries; 3 encoder layers) routes shipped GSM8K
traffic, replayed through the real routing path with shadow answers at rate 0.5. After every ``every`` queries
``learn`` retrains on the log and promotes the new router only when it is better on the newest pairs. Each round
prints, on a fixed held-out set of GSM8K queries, the share of calls the current router can send to the small
model at a 1% and a 5% quality drop (the savings) and its APGR. Offline: shipped data, no model calls.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..train.data import shipped_path
from ..train.data_io import RoutingData, load_routing_data
from ..train.embedding_cache import CachedEncoder
from ..train.evaluation import evaluate_scores
from ..train.training import train_router
from .learn import LearnError, learn
from .replay import replay_data


def _pooled(parts: list[RoutingData]) -> RoutingData:
    out = RoutingData([], [], [], [], source="other workloads")
    for k, d in enumerate(parts):
        out.query_ids += [f"{k}:{q}" for q in d.query_ids]
        out.queries += d.queries
        out.small_scores += d.small_scores
        out.large_scores += d.large_scores
    return out


def run_learn_demo(
    *, rounds: int = 4, every: int = 100, shadow_rate: float = 0.5, holdout: int = 300, echo: Callable = print
) -> list[dict]:
    """Run the demo, printing one line per round; returns the rounds' measurements."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hybrid-llm-learn-demo-") as tmp:
        work = Path(tmp)
        enc = CachedEncoder(cache_dir=work / "emb", layers=3)
        mmlu = load_routing_data(shipped_path("routellm_mmlu"))
        mmlu = mmlu.subset(np.random.default_rng(0).permutation(len(mmlu))[:600])
        mt = load_routing_data(shipped_path("routellm_mtbench_t1"))
        gsm = load_routing_data(shipped_path("routellm_gsm8k_answers"))
        order = np.random.default_rng(0).permutation(len(gsm))
        hold, stream = gsm.subset(order[:holdout]), gsm.subset(order[holdout : holdout + rounds * every])
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
            f"start: a router trained on MMLU + MT-Bench only; replaying GSM8K traffic, shadow rate {shadow_rate:g}; "
            f"measured on {holdout} held-out GSM8K queries"
        )
        header = (
            f"{'queries':>7}  {'pairs':>5}  {'learn':<28}  {'small calls @1% drop':>20}  {'@5% drop':>8}  {'APGR':>5}"
        )
        echo(header)
        echo("-" * len(header))
        m = measure(current)
        rows = [{"queries": 0, "pairs": 0, "step": "(starting router)", **m}]
        log = work / "traffic.db"
        for r in range(rounds):
            chunk = stream.subset(range(r * every, (r + 1) * every))
            replay_data(chunk, log, current, shadow_rate=shadow_rate, seed=r)
            try:
                res = learn(log, work / "router", base=current, encoder=enc, depths=None, verifier=False, seed=0)
                pairs = res.n_pairs
                step = f"{'promoted' if res.promoted else 'kept'} ({res.new.apgr:.2f} vs {res.base.apgr:.2f})"
                if res.promoted:
                    current = res.router
            except LearnError:
                pairs, step = None, "too few pairs yet"
            rows.append({"queries": (r + 1) * every, "pairs": pairs, "step": step, **measure(current)})
        for row in rows:
            echo(
                f"{row['queries']:>7}  {row['pairs'] if row['pairs'] is not None else '-':>5}  {row['step']:<28}  "
                f"{row['small_at_1']:>20.0%}  {row['small_at_5']:>8.0%}  {row['apgr']:>5.3f}"
            )
        echo(
            f"small calls = share of held-out calls the router sends to the small model within that quality drop "
            f"(the savings); {time.perf_counter() - started:.0f}s"
        )
    return rows
