"""Certify the shipped default router's thresholds on workloads it has never seen (issue #20 part 4).

The shipped default was trained on the three RouteLLM sets (Mixtral-8x7B vs GPT-4 on GSM8K, MMLU, MT-Bench). A user
puts it in front of *their* workload and *their* two models. What can ``max_quality_drop=d`` promise there? This
script scores every row of the permissively licensed tables in ``../shared/data/routing`` (read for measurement,
never shipped) with the shipped router, one workload per (table, source): the 11 LLMRouter tasks (Mistral-7B vs
Nemotron-51B), the MMLU-Pro categories (Llama-3.1 8B vs 70B; questions the router was trained on, as MMLU
questions, are dropped, and with them whole categories that come from MMLU) and the 4 M-IFEval languages of each
of its two model pairs; workloads of fewer than 100 queries are left out.

For each threshold of a grid, it measures every workload's realised quality drop and large-call share, and stores
in the router's calibration table the bounds of :func:`hybrid_router.core.certify.workload_bounds`: for a new
workload exchangeable with these m, the chosen threshold's realised drop exceeds ``d`` with probability at most
(k + 1) / (m + 1) <= delta = 0.1. A leave-one-workload-out check prints how often the promise failed on the
workload left out. With ``--write``, the table and the default threshold (the certified one for a 1% drop) go
into the shipped ``router.json``.

Usage: python benchmarks/certify_default_router.py [--write]   (``--write`` updates the shipped router.json)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hybrid_router.core.calibration import ALL_LARGE, Calibration  # noqa: E402
from hybrid_router.core.certify import workload_bounds  # noqa: E402
from hybrid_router.core.router import CONFIG_FILE, FORMAT_VERSION, HybridRouter  # noqa: E402
from hybrid_router.train.data import shipped_path  # noqa: E402
from hybrid_router.train.data_io import load_routing_data  # noqa: E402
from hybrid_router.train.embedding_cache import CachedEncoder  # noqa: E402
from hybrid_router.train.evaluation import format_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "routing"
FOLDER = ROOT / "shared" / "hybrid_router" / "core" / "default_router"
DELTA = 0.1
#: A workload with fewer queries is left out: its realised drop would be mostly noise.
MIN_WORKLOAD_QUERIES = 100
#: The shipped default's default threshold is the certified one for this drop.
DEFAULT_DROP = 0.01
TABLES = (
    "llmrouter_mistral7b_vs_nemotron51b.csv",
    "mmlupro_llama3.1-8b_vs_70b.csv",
    "mifeval_mistral7b_vs_gpt4o_answers.csv",
    "mifeval_qwen2.5-1.5b_vs_32b_answers.csv",
)


def stem(query: str) -> str:
    """A multiple-choice question without its options, normalised (to find MMLU questions inside MMLU-Pro)."""
    head = re.split(r"\n\s*A[.)]", query, maxsplit=1)[0]
    return re.sub(r"\W+", " ", head.lower()).strip()


def workloads() -> list[tuple[str, list[str], np.ndarray, np.ndarray]]:
    """(name, queries, small quality, large quality) per workload."""
    seen = {stem(q) for q in load_routing_data(shipped_path("routellm_mmlu")).queries}
    out = []
    csv.field_size_limit(1 << 30)
    for table in TABLES:
        data = load_routing_data(DATA / table)
        with open(DATA / table, newline="") as f:
            sources = np.array([row["source"] for row in csv.DictReader(f)])
        pair = table.split("_", 1)[1].rsplit(".", 1)[0].replace("_answers", "")
        for source in sorted(set(sources)):
            idx = [
                i
                for i in np.nonzero(sources == source)[0]
                if not table.startswith("mmlupro") or stem(data.queries[i]) not in seen
            ]
            if len(idx) >= MIN_WORKLOAD_QUERIES:
                sub = data.subset(idx)
                out.append((f"{source} ({pair})", sub.queries, sub.mean_small(), sub.mean_large()))
    return out


def measured(scores, q_s, q_l, thresholds) -> tuple[np.ndarray, np.ndarray]:
    to_large = (scores[None, :] < thresholds[:, None]) | (thresholds[:, None] >= ALL_LARGE)
    routed = np.where(to_large, q_l[None, :], q_s[None, :]).mean(axis=1)
    return (q_l.mean() - routed) / max(abs(q_l.mean()), 1e-12), to_large.mean(axis=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="write the certified table into the shipped router")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    router = HybridRouter.default()
    router.encoder = CachedEncoder(cache_dir=ROOT / "scratch" / "guarantees" / "emb", layers=router.encoder_layers)
    loads = workloads()
    scored = [(name, router.score_texts(queries), q_s, q_l) for name, queries, q_s, q_l in loads]
    pooled = np.concatenate([s for _, s, _, _ in scored])
    table = Calibration.fit(pooled, np.concatenate([w[2] for w in scored]), np.concatenate([w[3] for w in scored]))
    per = [measured(s, q_s, q_l, table.thresholds) for _, s, q_s, q_l in scored]
    drops, shares = np.array([p[0] for p in per]), np.array([p[1] for p in per])
    drop_b, share_b, cert = workload_bounds(drops, shares, DELTA)
    certified = Calibration(table.thresholds, table.large_share, table.quality_drop, len(pooled), drop_b, share_b, cert)
    old = router.calibration

    rows = []
    for d in (0.0, 0.01, 0.02, 0.05, 0.10):
        new, before = certified.resolve_max_quality_drop(d), old.resolve_max_quality_drop(d)
        j = int(np.searchsorted(table.thresholds, new.threshold))
        b = int(np.searchsorted(table.thresholds, before.threshold))
        rows.append(
            {
                "d": f"{d:.2f}",
                "threshold (workloads)": new.threshold,
                "large share, pooled": float(table.large_share[j]),
                "workloads over d": f"{int(np.sum(drops[:, j] > d + 1e-12))}/{len(scored)}",
                "threshold (in-domain, 0.2)": before.threshold,
                "its large share, pooled": float(table.large_share[b]),
                "its workloads over d": f"{int(np.sum(drops[:, b] > d + 1e-12))}/{len(scored)}",
            }
        )
    print(f"## The shipped default on {len(scored)} unseen workloads ({len(pooled)} queries); {cert.method}\n")
    print(format_table(rows))

    # leave one workload out: certify on the others, check the one left out
    misses = {d: 0 for d in (0.01, 0.02, 0.05)}
    for left in range(len(scored)):
        keep = [i for i in range(len(scored)) if i != left]
        db, _, _ = workload_bounds(drops[keep], shares[keep], DELTA)
        for d in misses:
            ok = np.nonzero(db <= d + 1e-12)[0]
            j = int(ok[np.argmin(table.large_share[ok])])
            misses[d] += drops[left, j] > d + 1e-12
    print("\nleave-one-workload-out: share of left-out workloads whose realised drop exceeded d")
    print(format_table([{"d": f"{d:.2f}", "violations": v / len(scored)} for d, v in misses.items()]))
    print("\nper workload (n, APGR-free view): realised drop at the certified 5% threshold")
    j5 = int(np.searchsorted(table.thresholds, certified.resolve_max_quality_drop(0.05).threshold))
    print(
        format_table(
            [
                {"workload": name, "n": str(len(s)), "drop": float(drops[i, j5]), "large share": float(shares[i, j5])}
                for i, (name, s, _, _) in enumerate(scored)
            ]
        )
    )
    if args.write:
        config = json.loads((FOLDER / CONFIG_FILE).read_text())
        config["format_version"] = FORMAT_VERSION
        config["calibration"] = certified.to_dict()
        config["default_threshold"] = round(certified.resolve_max_quality_drop(DEFAULT_DROP).threshold, 7)
        config["info"]["default_threshold_rule"] = f"certified on unseen workloads: max_quality_drop={DEFAULT_DROP:g}"
        config["info"]["calibration"] = (
            f"certified on {len(scored)} workloads it was not trained on ({cert.method}); "
            "rebuild: python benchmarks/certify_default_router.py --write"
        )
        (FOLDER / CONFIG_FILE).write_text(json.dumps(config, indent=1))
        print(f"\nwrote {FOLDER / CONFIG_FILE}")


if __name__ == "__main__":
    main()
