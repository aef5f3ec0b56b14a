"""Rebuild the shipped default router (``shared/hybrid_router/core/default_router/``) from the shipped data.

One router trained on the three shipped RouteLLM sets pooled (GSM8K, MMLU, MT-Bench first turns; Mixtral-8x7B
vs GPT-4), det labels (one answer per model and query), the default ``auto`` recipe, ``train_router``'s 80/20
split (seed 0): the recipe's choice is made and the calibration table fitted on the 80% / 20% parts, then the
chosen head is refitted on all queries. Pooled training is as good as one router per set here (the query features
tell the sets apart), and one router is what ``HybridRouter.default()`` can ship.

Embeddings are cached under ``scratch/emb_cache/`` (git-ignored); encoding all 15k queries from scratch takes
10-20 minutes on one CPU thread.

Usage: python benchmarks/train_default_router.py [--out shared/hybrid_router/core/default_router]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from hybrid_router import HybridRouter, RoutingData, load_routing_data  # noqa: E402
from hybrid_router.serve.demo import DEMO_QUERIES  # noqa: E402
from hybrid_router.train.data import SHIPPED_DATASETS, shipped_path  # noqa: E402
from hybrid_router.train.embedding_cache import CachedEncoder  # noqa: E402
from hybrid_router.train.evaluation import evaluate_scores, format_table  # noqa: E402
from hybrid_router.train.training import DEFAULT_RECIPE, train_router  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HARD = (
    "Prove that for every integer n >= 2 the number of ways to tile a 2 x n board with dominoes and L-shaped "
    "trominoes satisfies a linear recurrence of order 3, find the recurrence and its initial values, then derive "
    "a closed form and show that the ratio of consecutive terms converges; justify every step."
)
EASY = "What is the capital of France?"


def pooled_data() -> RoutingData:
    """The shipped sets as one data set (query ids keep their ``gsm8k/``, ``mmlu/``, ``mtbench/`` prefixes)."""
    parts = [load_routing_data(shipped_path(name)) for name in SHIPPED_DATASETS]
    return RoutingData(
        query_ids=[q for p in parts for q in p.query_ids],
        queries=[q for p in parts for q in p.queries],
        small_scores=[s for p in parts for s in p.small_scores],
        large_scores=[s for p in parts for s in p.large_scores],
        small_model=parts[0].small_model,
        large_model=parts[0].large_model,
        source="shipped RouteLLM sets: " + ", ".join(SHIPPED_DATASETS),
    )


def main() -> None:
    """Train, report per-set validation metrics, save and check the router."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "shared" / "hybrid_router" / "core" / "default_router"))
    parser.add_argument("--cache-dir", default=str(ROOT / "scratch" / "emb_cache"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = pooled_data()
    encoder = CachedEncoder("minilm", cache_dir=args.cache_dir)
    start = time.perf_counter()
    result = train_router(
        data, labels="det", recipe=DEFAULT_RECIPE, encoder=encoder, val_fraction=0.2, seed=0, progress=True
    )
    print(
        f"trained in {time.perf_counter() - start:.0f}s on {len(data)} queries; "
        f"chosen head: {result.router.info['selection']['chosen']}"
    )

    # Per-set metrics on the validation split, scored by the head trained without it (what calibration saw).
    _, val = data.split(0.8, seed=0)
    rows, per_set = [], {}
    for name in ("gsm8k", "mmlu", "mtbench"):
        idx = [i for i, q in enumerate(val.query_ids) if q.startswith(name + "/")]
        report = evaluate_scores(
            f"{name} (n={len(idx)})", result.val_scores[idx], val.mean_small()[idx], val.mean_large()[idx]
        )
        rows.append(report.row())
        per_set[name] = {"n_val": len(idx), "apgr": round(report.apgr, 4)}
    print("validation (20% held out, head trained on the other 80%):")
    print(format_table(rows))

    router = result.router
    router.info.update(
        validation_apgr=per_set,
        label_note="det labels; one answer per model and query",
        rebuild="python benchmarks/train_default_router.py",
    )
    out = router.save(args.out)
    size = sum(f.stat().st_size for f in Path(out).iterdir() if f.is_file())
    print(f"saved to {out} ({size / 1e6:.2f} MB)")

    loaded = HybridRouter.load(out)
    hard, easy = loaded.score(HARD), loaded.score(EASY)
    print(f"score(hard proof) = {hard:.3f} < score({EASY!r}) = {easy:.3f}")
    if not hard < easy:
        raise SystemExit("the default router does not score the hard query below the easy one")
    demo = loaded.score_batch(list(DEMO_QUERIES))  # first 5 trivial, last 3 hard (benchmarks/transfer.py)
    trivial, hard_demo, threshold = demo[:5], demo[-3:], loaded.default_threshold
    print(
        f"demo: trivial {', '.join(f'{v:.3f}' for v in trivial)} | hard {', '.join(f'{v:.3f}' for v in hard_demo)}; "
        f"each trivial above each hard: {bool(trivial.min() > hard_demo.max())}; at the default threshold "
        f"{threshold:.3f}: {int((demo >= threshold).sum())} of {len(demo)} small "
        f"({''.join('S' if v >= threshold else 'L' for v in demo)})"
    )


if __name__ == "__main__":
    main()
