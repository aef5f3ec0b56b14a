"""Do the dial's promises hold on queries the router did not see? (issue #20)

Three measurements, each printed as a table (misses included):

1. **Calibration** (``--part calibration``). For each table, every row is scored once by a router that did not
   train on it (out-of-fold scores of ``train_router``, ``logistic`` recipe, 3 encoder layers, the answer verifier
   where the table has answers). Then, for 20 random splits, half of the rows calibrate (the certified tables of
   0.3 at ``delta=0.1``, and the uncertified tables of 0.2 on the same rows) and the other half measure the
   realised quality drop of the threshold chosen for ``max_quality_drop=d``, d in {0.01, 0.02, 0.05}, under
   ``strategy="route"`` and (answer tables) ``"cascade"``. Reported: mean and 90th percentile of the realised drop,
   the violation rate (realised drop > d; target <= delta = 0.1) and the mean share of calls sent large.

   Note: the guarantee bounds the *expected* drop on new queries; the realised drop on a finite test half also
   carries that half's sampling noise, so a threshold whose expected drop is just under d still exceeds d on some
   test halves. The violation rate here is therefore a conservative reading of the guarantee.

2. **Verifier vs route-only, leave-one-source-out** (``--part verifier``): on the answer files, train on all
   sources but one of a model pair (GSM8K + MT-Bench for Mixtral -> GPT-4; the four M-IFEval languages for each
   M-IFEval pair) and compare, on the left-out source, the APGR of the verifier's scores with the router's.
   Target: verifier APGR >= route-only APGR - 0.01 on every fold.

3. **Promotion** (``--part promotion``): ``learn``'s paired test on held-out pairs of 25 to 500 queries. The base
   is the shipped router's scores on 3,019 shipped queries (GSM8K and a sample of MMLU); the candidate is those
   scores blurred by noise (truly worse by about 0.05 APGR on the pool) or the reverse (truly better). Target:
   wrong promotions <= 5% at every size.

Data: the shipped RouteLLM tables and, from ``../shared/data/routing`` (read for measurement only, never shipped),
the M-IFEval, LLMRouter and MMLU-Pro tables. Embeddings are cached under ``scratch/guarantees/emb``.

Usage: python benchmarks/guarantees.py [--part all|calibration|verifier|promotion] [--splits 20] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hybrid_router.core.calibration import ALL_LARGE, Calibration  # noqa: E402
from hybrid_router.core.cascade import CascadeCalibration, simulate  # noqa: E402
from hybrid_router.core.router import HybridRouter  # noqa: E402
from hybrid_router.train.data import shipped_path  # noqa: E402
from hybrid_router.train.data_io import RoutingData, load_routing_data  # noqa: E402
from hybrid_router.train.embedding_cache import CachedEncoder  # noqa: E402
from hybrid_router.train.evaluation import apgr_resampled, format_table  # noqa: E402
from hybrid_router.train.training import train_router  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "routing"
DELTA = 0.1
DROPS = (0.01, 0.02, 0.05)

#: name -> (path, has answers)
TABLES = {
    "gsm8k (answers)": (shipped_path("routellm_gsm8k_answers"), True),
    "mtbench (answers)": (shipped_path("routellm_mtbench_t1_answers"), True),
    "mifeval mistral->gpt4o": (DATA / "mifeval_mistral7b_vs_gpt4o_answers.csv", True),
    "mifeval qwen 1.5b->32b": (DATA / "mifeval_qwen2.5-1.5b_vs_32b_answers.csv", True),
    "mmlu": (shipped_path("routellm_mmlu"), False),
    "llmrouter": (DATA / "llmrouter_mistral7b_vs_nemotron51b.csv", False),
    "mmlu-pro": (DATA / "mmlupro_llama3.1-8b_vs_70b.csv", False),
}


def encoder() -> CachedEncoder:
    return CachedEncoder(cache_dir=ROOT / "scratch" / "guarantees" / "emb", layers=3)


def cross_fitted(name: str, data: RoutingData, answers: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Every row's score by models that did not train on it (train_router's out-of-fold calibration scores);
    cached under ``scratch/guarantees/scores`` (delete the folder after changing training)."""
    cache = ROOT / "scratch" / "guarantees" / "scores" / (re.sub(r"\W+", "_", name) + f"_{len(data)}.npz")
    if cache.exists():
        saved = np.load(cache)
        return saved["route"], saved["verify"] if "verify" in saved else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train_router(data, recipe="logistic", encoder=encoder(), depths=None, verifier=answers, seed=0)
    cache.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"route": result.calibration_scores}
    if result.calibration_verifier_scores is not None:
        arrays["verify"] = result.calibration_verifier_scores
    np.savez(cache, **arrays)
    return result.calibration_scores, result.calibration_verifier_scores


def realised(to_large: np.ndarray, q_s: np.ndarray, q_l: np.ndarray) -> float:
    return float((q_l.mean() - np.where(to_large, q_l, q_s).mean()) / q_l.mean())


def calibration_part(splits: int, quick: bool) -> None:
    rows = []
    for name, (path, has_answers) in TABLES.items():
        if not Path(path).exists():
            print(f"skipped {name}: {path} not found")
            continue
        t0 = time.time()
        data = load_routing_data(path)
        if quick and len(data) > 3000:
            data = data.subset(np.random.default_rng(0).permutation(len(data))[:3000])
        s_r, s_v = cross_fitted(name, data, has_answers)
        q_s, q_l = data.mean_small(), data.mean_large()
        n = len(data)
        out: dict[tuple[str, str, float], list[tuple[float, float]]] = {}
        for split in range(splits):
            perm = np.random.default_rng(1000 + split).permutation(n)
            cal, test = perm[: n // 2], perm[n // 2 :]
            for kind, delta in (("certified", DELTA), ("uncertified", None)):
                route = Calibration.fit(s_r[cal], q_s[cal], q_l[cal], delta=delta, seed=split)
                cascade = None
                if s_v is not None:
                    cascade = CascadeCalibration.fit(s_r[cal], s_v[cal], q_s[cal], q_l[cal], delta=delta, seed=split)
                for d in DROPS:
                    t = route.resolve_max_quality_drop(d).threshold
                    to_large = (s_r[test] < t) | (t >= ALL_LARGE)
                    key = ("route", kind, d)
                    out.setdefault(key, []).append((realised(to_large, q_s[test], q_l[test]), to_large.mean()))
                    if cascade is not None:
                        (rt, vt), _ = cascade.resolve_max_quality_drop(d)
                        o = simulate(s_r[test], s_v[test], q_s[test], q_l[test], rt, vt)
                        drop = float((q_l[test].mean() - o.quality) / q_l[test].mean())
                        out.setdefault(("cascade", kind, d), []).append((drop, o.large_share))
        for (strategy, kind, d), values in out.items():
            drops, shares = np.array(values).T
            rows.append(
                {
                    "table": f"{name} (n={n})",
                    "strategy": strategy,
                    "thresholds": kind,
                    "d": f"{d:.2f}",
                    "mean drop": float(drops.mean()),
                    "p90 drop": float(np.quantile(drops, 0.9)),
                    "violations": float(np.mean(drops > d + 1e-12)),
                    "large share": float(shares.mean()),
                }
            )
        print(f"{name}: {n} rows, {time.time() - t0:.0f} s", flush=True)
    rows.sort(key=lambda r: (r["table"], r["strategy"], r["d"], r["thresholds"]))
    print(f"\n## Calibration: realised drop on the unseen half, {splits} splits, delta={DELTA}\n")
    print(format_table(rows))


def _sources(path: Path) -> list[str]:
    with open(path, newline="") as f:
        csv.field_size_limit(1 << 30)
        return [row["source"] for row in csv.DictReader(f)]


def verifier_part() -> None:
    """Leave-one-source-out: verifier vs route-only APGR on the left-out source of each answer-file pair."""
    groups = []
    gsm, mt = (
        load_routing_data(shipped_path("routellm_gsm8k_answers")),
        load_routing_data(shipped_path("routellm_mtbench_t1_answers")),
    )
    groups.append(("mixtral->gpt4", {"gsm8k": gsm, "mtbench": mt}))
    for label, file in (
        ("mistral->gpt4o", "mifeval_mistral7b_vs_gpt4o_answers.csv"),
        ("qwen1.5b->32b", "mifeval_qwen2.5-1.5b_vs_32b_answers.csv"),
    ):
        if not (DATA / file).exists():
            continue
        data, sources = load_routing_data(DATA / file), np.array(_sources(DATA / file))
        groups.append((label, {s: data.subset(np.nonzero(sources == s)[0]) for s in sorted(set(sources))}))
    rows = []
    for label, parts in groups:
        for left_out, test in parts.items():
            train = concat([p for s, p in parts.items() if s != left_out], f"{label} without {left_out}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                router = train_router(train, recipe="logistic", encoder=encoder(), depths=None, seed=0).router
            q_s, q_l = test.mean_small(), test.mean_large()
            route = float(apgr_resampled(router.score_batch(test.queries), q_s, q_l)[0])
            verified = float(apgr_resampled(router.score_answer_batch(test.queries, test.small_answers), q_s, q_l)[0])
            info = router.info.get("verifier", {})
            rows.append(
                {
                    "pair": label,
                    "left out": f"{left_out} ({len(test)})",
                    "route APGR": route,
                    "verifier APGR": verified,
                    "verifier - route": verified - route,
                    "verifier kept": str(info.get("kept_over_route_only")),
                    "inputs": info.get("chosen", "-"),
                    "target met": "yes" if verified >= route - 0.01 else "NO",
                }
            )
            print(rows[-1], flush=True)
    print("\n## Verifier vs route-only, leave-one-source-out\n")
    print(format_table(rows))


def concat(parts: list[RoutingData], source: str) -> RoutingData:
    return RoutingData(
        query_ids=[f"{i}/{q}" for i, p in enumerate(parts) for q in p.query_ids],
        queries=[q for p in parts for q in p.queries],
        small_scores=[s for p in parts for s in p.small_scores],
        large_scores=[s for p in parts for s in p.large_scores],
        metric=parts[0].metric,
        small_model=parts[0].small_model,
        large_model=parts[0].large_model,
        source=source,
        small_answers=[a for p in parts for a in p.small_answers],
        large_answers=None,
    )


def promotion_part(draws: int) -> None:
    from hybrid_router.loop.promotion import promotion_test

    gsm = load_routing_data(shipped_path("routellm_gsm8k"))
    mmlu = load_routing_data(shipped_path("routellm_mmlu"))
    mmlu = mmlu.subset(np.random.default_rng(0).permutation(len(mmlu))[:1700])
    queries = gsm.queries + mmlu.queries
    q_s = np.concatenate([gsm.mean_small(), mmlu.mean_small()])
    q_l = np.concatenate([gsm.mean_large(), mmlu.mean_large()])
    clean = HybridRouter.default().score_batch(queries)
    blurred = np.clip(clean + np.random.default_rng(1).normal(0, 0.25, len(clean)), 0, 1)
    pool = (float(apgr_resampled(clean, q_s, q_l)[0]), float(apgr_resampled(blurred, q_s, q_l)[0]))
    rng = np.random.default_rng(2)
    rows = []
    for size in (25, 50, 100, 200, 500):
        wrong = right = 0
        for _ in range(draws):
            idx = rng.choice(len(clean), size, replace=False)
            wrong += promotion_test(
                clean[idx], blurred[idx], q_s[idx], q_l[idx], seed=int(rng.integers(1 << 30))
            ).better
            right += promotion_test(
                blurred[idx], clean[idx], q_s[idx], q_l[idx], seed=int(rng.integers(1 << 30))
            ).better
        rows.append(
            {
                "held-out queries": str(size),
                "P(promote the worse)": wrong / draws,
                "P(promote the better)": right / draws,
            }
        )
        print(rows[-1], flush=True)
    print(
        f"\n## Promotion: {draws} draws per size; pool APGR shipped {pool[0]:.3f} vs blurred {pool[1]:.3f} "
        f"(gap {pool[0] - pool[1]:.3f})\n"
    )
    print(format_table(rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", "calibration", "verifier", "promotion"), default="all")
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--quick", action="store_true", help="at most 3,000 rows per table, 5 splits, 100 draws")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    splits, draws = (5, 100) if args.quick else (args.splits, args.draws)
    if args.part in ("all", "calibration"):
        calibration_part(splits, args.quick)
    if args.part in ("all", "promotion"):
        promotion_part(draws)
    if args.part in ("all", "verifier"):
        verifier_part()


if __name__ == "__main__":
    sys.exit(main())
