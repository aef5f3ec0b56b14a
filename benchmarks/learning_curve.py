"""Learning curve: a router learns an unseen workload from its own (replayed) traffic.

Start from a router trained without GSM8K (the shipped MMLU set, a fixed random 2,000 queries of it, plus the 80
MT-Bench turn-1 queries; 3 encoder layers, ``auto`` recipe without depth search). Shuffle the shipped GSM8K set
with answers (seed 0), keep its first 400 queries as a fixed held-out set, and replay the next ones as a stream
through the real routing path (``hybrid_router.loop.replay.replay_data``: router decide -> fallback runner ->
routing log, shadow answers at rate p, recorded scores) with the *current* router. Every ``--every`` queries,
``hybrid_router.loop.learn.learn`` runs on the log so far (newest 20% of the scored pairs held out, promote only if
better, refit on all pairs when promoted) and the current router becomes the promoted one. After each step the
current router is measured on the fixed held-out 400: APGR and the share of calls it sends to the large model at
its own default threshold (the calibrated 1%-drop one), with the quality drop there.

References on the same held-out queries: the static starting router, a router trained offline on the same stream
queries with *all* labels (what learning could reach if every call had been shadowed and graded), and the oracle.

Target (issue 13): after 600 replayed GSM8K queries at shadow rate 0.5, held-out APGR within 0.02 of the offline
router trained on those 600 queries, and clearly (>= 0.03) above the starting router.

Embeddings are cached under ``scratch/learning_curve/emb`` (git-ignored); the learn steps run without the answer
verifier (the curve is about the router; ``hybrid-llm learn`` trains it when answers are logged). One torch thread.

Usage: python benchmarks/learning_curve.py [--quick] [--stream 600] [--every 150] [--rates 0.2 0.5 1.0]
       [--out runs/learning_curve]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hybrid_router import HybridRouter  # noqa: E402
from hybrid_router.loop.learn import LearnError, learn  # noqa: E402
from hybrid_router.loop.replay import replay_data  # noqa: E402
from hybrid_router.train.data import shipped_path  # noqa: E402
from hybrid_router.train.data_io import RoutingData, load_routing_data  # noqa: E402
from hybrid_router.train.embedding_cache import CachedEncoder  # noqa: E402
from hybrid_router.train.evaluation import evaluate_scores, oracle_scores  # noqa: E402
from hybrid_router.train.training import train_router  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


#: AlpacaEval 2 annotations (CC-BY-NC-4.0): beside the repository for experiments, never shipped.
ALPACA = ROOT.parent / "shared" / "data" / "routing" / "alpaca_eval2_llama3.2-3b_vs_gpt4turbo.csv"


def pooled(parts: list[RoutingData], source: str) -> RoutingData:
    """Several data sets as one (query ids prefixed by the set)."""
    out = RoutingData([], [], [], [], source=source)
    for k, d in enumerate(parts):
        out.query_ids += [f"{k}:{q}" for q in d.query_ids]
        out.queries += d.queries
        out.small_scores += d.small_scores
        out.large_scores += d.large_scores
    return out


def measure(router, hold: RoutingData) -> dict:
    """Held-out APGR, and large share and quality drop at the router's own default threshold."""
    scores = router.score_texts(hold.queries)
    small_q, large_q = hold.mean_small(), hold.mean_large()
    large = scores < router.default_threshold
    q_large = float(np.mean(large_q))
    drop = (q_large - float(np.mean(np.where(large, large_q, small_q)))) / abs(q_large)
    apgr = evaluate_scores("r", scores, small_q, large_q).apgr
    return {"apgr": apgr, "large_share": float(np.mean(large)), "drop": drop}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller run: 300 streamed, 1,000 MMLU queries")
    ap.add_argument("--stream", type=int, default=None, help="GSM8K queries replayed (default 600; quick 300)")
    ap.add_argument("--every", type=int, default=150, help="learn every N replayed queries (default 150)")
    ap.add_argument("--holdout", type=int, default=400, help="fixed held-out GSM8K queries (default 400)")
    ap.add_argument("--mmlu", type=int, default=None, help="MMLU queries for the starting router (default 2000)")
    ap.add_argument("--rates", type=float, nargs="+", default=[0.2, 0.5, 1.0])
    ap.add_argument(
        "--workload",
        choices=("gsm8k", "alpaca"),
        default="gsm8k",
        help="gsm8k: start from a router trained on MMLU + MT-Bench, replay GSM8K (the target run); alpaca: start "
        "from the shipped default router, replay AlpacaEval 2 (../shared data, experiments only, not shipped)",
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.workload == "alpaca":
        args.holdout = min(args.holdout, 300)
    args.out = args.out or str(
        ROOT / "runs" / ("learning_curve" if args.workload == "gsm8k" else "learning_curve_alpaca")
    )
    stream_n = args.stream or (300 if args.quick else 600)
    mmlu_n = args.mmlu or (1000 if args.quick else 2000)
    torch.set_num_threads(1)
    started = time.time()
    out = Path(args.out)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    enc = CachedEncoder(cache_dir=ROOT / "scratch" / "learning_curve" / "emb", layers=3)

    mmlu = load_routing_data(shipped_path("routellm_mmlu"))
    mmlu = mmlu.subset(np.random.default_rng(0).permutation(len(mmlu))[:mmlu_n])
    mt = load_routing_data(shipped_path("routellm_mtbench_t1"))
    gsm = load_routing_data(shipped_path("routellm_gsm8k_answers") if args.workload == "gsm8k" else ALPACA)
    if args.workload == "alpaca":
        stream_n = min(stream_n, len(gsm) - args.holdout)
    order = np.random.default_rng(0).permutation(len(gsm))
    hold = gsm.subset(order[: args.holdout])
    stream = gsm.subset(order[args.holdout : args.holdout + stream_n])
    enc.encode(mmlu.queries + mt.queries + gsm.queries, batch_size=32)  # fill the cache once

    if args.workload == "alpaca":
        start = HybridRouter.default()
    else:
        start = train_router(
            pooled([mmlu, mt], f"MMLU {mmlu_n} + MT-Bench"), encoder=enc, depths=None, verifier=False, seed=0
        ).router
    small_q, large_q = hold.mean_small(), hold.mean_large()
    oracle = evaluate_scores("oracle", oracle_scores(small_q, large_q), small_q, large_q).apgr
    start_m = measure(start, hold)
    start_name = "shipped default" if args.workload == "alpaca" else f"MMLU {mmlu_n} + MT-Bench {len(mt)}"
    print(
        f"starting router ({start_name}): held-out {args.workload} APGR {start_m['apgr']:.3f}, "
        f"large {start_m['large_share']:.0%} at its default; oracle {oracle:.3f}",
        flush=True,
    )

    steps = list(range(args.every, stream_n + 1, args.every))
    offline = {}
    for k in steps:
        r = train_router(stream.subset(range(k)), encoder=enc, depths=None, verifier=False, seed=0).router
        offline[k] = measure(r, hold)
        print(f"offline router on the first {k} stream queries, all labels: APGR {offline[k]['apgr']:.3f}", flush=True)

    curves: dict[float, list[dict]] = {}
    for rate in args.rates:
        log = work / f"log_{rate:g}.db"
        current = start
        curve = []
        for step, k in enumerate(steps):
            chunk = stream.subset(range(k - args.every, k))
            replay_data(chunk, log, current, shadow_rate=rate, seed=1000 * step + int(rate * 100))
            try:
                res = learn(
                    log, work / f"router_{rate:g}", base=current, encoder=enc, depths=None, verifier=False, seed=0
                )
                pairs, promoted, note = res.n_pairs, res.promoted, f"{res.new.apgr:.3f} vs {res.base.apgr:.3f}"
                if res.promoted:
                    current = res.router
            except LearnError as exc:
                pairs, promoted, note = None, False, str(exc).split(": ", 1)[1][:40]
            m = measure(current, hold)
            curve.append({"queries": k, "pairs": pairs, "promoted": promoted, "holdout_compare": note, **m})
            print(
                f"rate {rate:g} after {k}: pairs {pairs}, promoted {promoted} ({note}); held-out APGR "
                f"{m['apgr']:.3f}, large {m['large_share']:.0%}, drop {m['drop']:+.1%}",
                flush=True,
            )
        curves[rate] = curve

    # ------------------------------------------------------------------ table
    lines = [
        "| router | " + " | ".join(f"after {k}" for k in steps) + " |",
        "|---|" + "---|" * len(steps),
        f"| static start ({start_name}) | "
        + " | ".join(f"{start_m['apgr']:.3f} / {start_m['large_share']:.0%}" for _ in steps)
        + " |",
    ]
    for rate, curve in curves.items():
        cells = [f"{c['apgr']:.3f} / {c['large_share']:.0%}" + ("" if c["promoted"] else " (kept)") for c in curve]
        lines.append(f"| learn, shadow {rate:g} | " + " | ".join(cells) + " |")
    lines.append(
        "| offline, all labels | "
        + " | ".join(f"{offline[k]['apgr']:.3f} / {offline[k]['large_share']:.0%}" for k in steps)
        + " |"
    )
    lines.append("| oracle | " + " | ".join(f"{oracle:.3f}" for _ in steps) + " |")
    table = "\n".join(lines)
    print(
        f"\nheld-out {args.workload} ({len(hold)} queries): APGR / large-call share at the router's default threshold"
    )
    print(table)

    target_k = 600
    verdict = "not checked (the stream has fewer than 600 queries, or no shadow rate 0.5)"
    met = None
    if args.workload == "gsm8k" and 0.5 in curves and target_k in offline:
        got = next(c for c in curves[0.5] if c["queries"] == target_k)["apgr"]
        off = offline[target_k]["apgr"]
        met = got >= off - 0.02 and got >= start_m["apgr"] + 0.03
        verdict = (
            f"{'met' if met else 'MISSED'}: shadow 0.5 after 600: APGR {got:.3f} vs offline {off:.3f} "
            f"(needs >= {off - 0.02:.3f}) and start {start_m['apgr']:.3f} (needs >= {start_m['apgr'] + 0.03:.3f})"
        )
    print(f"\ntarget: {verdict}")
    print(f"total {time.time() - started:.0f}s")

    out.mkdir(parents=True, exist_ok=True)
    (out / "learning_curve.json").write_text(
        json.dumps(
            {
                "start": start_m,
                "oracle": oracle,
                "offline": {str(k): v for k, v in offline.items()},
                "curves": {str(r): c for r, c in curves.items()},
                "target_met": met,
                "verdict": verdict,
                "table": table,
            },
            indent=1,
        )
    )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return 0
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "apgr", "held-out APGR"), (axes[1], "large_share", "large-call share at default")):
        ax.plot(steps, [start_m[key]] * len(steps), "k:", label="static start (no GSM8K)")
        ax.plot(steps, [offline[k][key] for k in steps], "k--", label="offline, all labels")
        for rate, curve in curves.items():
            ax.plot(steps, [c[key] for c in curve], marker="o", label=f"learn, shadow {rate:g}")
        if key == "apgr":
            ax.axhline(oracle, color="grey", alpha=0.5, label="oracle")
        ax.set_xlabel("GSM8K queries replayed")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("learning GSM8K from replayed traffic (held-out 400 queries)")
    fig.tight_layout()
    png = out / "learning_curve.png"
    fig.savefig(png, dpi=120)
    print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
