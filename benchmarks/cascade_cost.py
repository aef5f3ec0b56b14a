"""What the cascade costs: dollars per 1,000 queries and end-to-end latency, route-only vs cascade vs all-large.

Data: the shipped GSM8K-answers set (``routellm_gsm8k_answers``: GSM8K questions with the recorded answers of
Mixtral-8x7B as the small model and GPT-4-1106 as the large one, graded correct / wrong). For each of ``--seeds``
(default 5) 50/50 split seeds (``data.split(0.5, seed=s)``, as ``benchmarks/routing_quality.py``), ``train_router``
(default recipe, det labels) is trained on the first half; it trains the answer verifier and calibrates the
cascade too. Operating points, with thresholds from the trained router's own calibration tables (chosen on a
validation split of the training half, never on the test half): route-only and cascade at ``max_quality_drop``
1% and 5%, and all-large. Each is replayed on the test half with the recorded answers.

Tokens: counted in the recorded query (input) and in the recorded answers (output) with the SmolLM2-135M tokenizer
(a real BPE tokenizer of an LLM, available offline; tiktoken is not installed). The chat template and system
prompt are not counted (the same few tokens on every call).

Cost: an escalated cascade query pays the small call and the large call; a query the router sends large pays the
large call only; a query answered small pays the small call only. Two price cases: (a) small model local and free;
(b) small model at 1/20 of the large model's price per token.

Latency (end to end: request to the complete answer; a cascade buffers the small answer until it is verified):
router forward and verifier measured on this CPU with one thread (the seed-0 router reloaded from disk so its
encoder is a real one, median over test queries); the small model's time to first token and decode speed measured
by generating with the shipped SmolLM2-135M (one thread) on a few training-half questions, applied to the recorded
small answers' token counts (so: SmolLM2-135M speed at Mixtral answer lengths); the large model from a stated API
model (:data:`LARGE_TTFT_S` to first token, then :data:`LARGE_TOKENS_PER_S`).

Usage: python benchmarks/cascade_cost.py [--seeds N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hybrid_router import HybridRouter, load_routing_data  # noqa: E402
from hybrid_router.core.conversation import router_text  # noqa: E402
from hybrid_router.local.chat import ChatOutput, LocalChat  # noqa: E402
from hybrid_router.train.data import shipped_path  # noqa: E402
from hybrid_router.train.embedding_cache import CachedEncoder  # noqa: E402
from hybrid_router.train.evaluation import format_table  # noqa: E402
from hybrid_router.train.training import train_router  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: The large model's list price, $ per 1M input / output tokens (GPT-4o class).
LARGE_PRICE = (2.50, 10.00)
LARGE_PRICE_NAME = "GPT-4o class"
#: Price cases for the small model: name -> $ per 1M input / output tokens.
SMALL_PRICES = {
    "(a) small local, free": (0.0, 0.0),
    "(b) small at 1/20": (LARGE_PRICE[0] / 20, LARGE_PRICE[1] / 20),
}
#: The large model's latency model: an API model's time to first token and decode speed.
LARGE_TTFT_S = 0.5
LARGE_TOKENS_PER_S = 50.0
DROPS = (0.01, 0.05)
SMALL_MODEL = "smollm2-135m"


def measure_small_model(chat: LocalChat, questions: list[str], max_new_tokens: int) -> dict:
    """Time to first token and decode tokens/s of the local small model (streamed, greedy), after one warm-up."""
    ttfts, rates = [], []
    for i, question in enumerate(questions):
        start = time.perf_counter()
        first = None
        final = None
        for piece in chat.stream([{"role": "user", "content": question}], max_new_tokens=max_new_tokens):
            if isinstance(piece, ChatOutput):
                final = piece
            elif first is None and piece:
                first = time.perf_counter()
        end = time.perf_counter()
        if i == 0 or final is None or first is None or final.output_tokens < 2:
            continue  # warm-up
        ttfts.append(first - start)
        rates.append((final.output_tokens - 1) / max(end - first, 1e-9))
    return {"ttft_s": float(np.mean(ttfts)), "tokens_per_s": float(np.mean(rates)), "n_prompts": len(ttfts)}


def measure_router(router: HybridRouter, queries: list[str], answers: list[str]) -> dict:
    """Median ms of one router forward on a fresh query and of the verifier on its answer right after."""
    route_ms, verify_ms = [], []
    for i, (query, answer) in enumerate(zip(queries, answers)):
        text = router_text(query)
        start = time.perf_counter()
        router.score_texts([text])
        middle = time.perf_counter()
        router.score_answer(query, answer)
        end = time.perf_counter()
        if i >= 3:
            route_ms.append((middle - start) * 1e3)
            verify_ms.append((end - middle) * 1e3)
    return {
        "router_ms": float(np.median(route_ms)),
        "verifier_ms": float(np.median(verify_ms)),
        "n_queries": len(route_ms),
        "verifier_inputs": list(router.verifier.inputs),
    }


def policy_masks(router: HybridRouter, route_scores: np.ndarray, verify_scores: np.ndarray) -> dict:
    """For each operating point: (runs small, runs large) boolean masks over the test queries."""
    n = len(route_scores)
    out = {"all-large": (np.zeros(n, bool), np.ones(n, bool))}
    for drop in DROPS:
        t = router.calibration.threshold_for_max_quality_drop(drop)
        small = route_scores >= t
        out[f"route-only @{drop:.0%} drop"] = (small, ~small)
    for drop in DROPS:
        r, v = router.cascade.thresholds_for_max_quality_drop(drop)
        direct = route_scores < r
        small = ~direct
        large = direct | (small & (verify_scores < v))
        out[f"cascade @{drop:.0%} drop"] = (small, large)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="50/50 split seeds (mean ± sd over them)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "cascade_cost"))
    parser.add_argument("--cache-dir", default=str(ROOT / "scratch" / "emb_cache"))
    parser.add_argument("--small-prompts", type=int, default=4, help="questions timed on the small model (+1 warm-up)")
    parser.add_argument("--small-max-tokens", type=int, default=64, help="tokens generated per timed question")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_routing_data(shipped_path("routellm_gsm8k_answers"))
    if data.small_answers is None or data.large_answers is None:
        raise SystemExit("routellm_gsm8k_answers has no small_answer/large_answer columns")

    chat = LocalChat.load(SMALL_MODEL)
    tokenizer = chat.tokenizer

    def count(texts: list[str]) -> np.ndarray:
        return np.array([len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]])

    tok_query, tok_small, tok_large = count(data.queries), count(data.small_answers), count(data.large_answers)
    warm_train = data.split(0.5, seed=0)[0]
    small_speed = measure_small_model(chat, warm_train.queries[: args.small_prompts + 1], args.small_max_tokens)
    del chat

    encoder = CachedEncoder("minilm", cache_dir=args.cache_dir)
    index = {q: i for i, q in enumerate(data.queries)}
    seeds_out, timing = [], None
    for seed in range(max(1, args.seeds)):
        train, test = data.split(0.5, seed=seed)
        start = time.perf_counter()
        router = train_router(train, encoder=encoder, seed=seed).router
        print(f"seed {seed}: trained in {time.perf_counter() - start:.1f}s", flush=True)
        if timing is None:
            with tempfile.TemporaryDirectory() as tmp:  # a real encoder, not the embedding cache
                loaded = HybridRouter.load(router.save(tmp))
                n = min(60, len(test))
                timing = measure_router(loaded, test.queries[:n], test.small_answers[:n])
        route_scores = router.score_texts(test.queries)
        verify_scores = router.score_answer_batch(test.queries, test.small_answers)
        idx = np.array([index[q] for q in test.queries])
        q_in, s_out, l_out = tok_query[idx], tok_small[idx], tok_large[idx]
        small_q, large_q = test.mean_small(), test.mean_large()
        small_s = small_speed["ttft_s"] + s_out / small_speed["tokens_per_s"]
        large_s = LARGE_TTFT_S + l_out / LARGE_TOKENS_PER_S
        rows = {}
        for policy, (runs_small, runs_large) in policy_masks(router, route_scores, verify_scores).items():
            answered_large = runs_large
            quality = np.where(answered_large, large_q, small_q).mean()
            drop = (large_q.mean() - quality) / max(abs(large_q.mean()), 1e-12)
            row = {
                "large_share": float(runs_large.mean()),
                "small_share": float(runs_small.mean()),
                "drop": float(drop),
            }
            large_cost = (q_in * LARGE_PRICE[0] + l_out * LARGE_PRICE[1]) / 1e6
            for case, (p_in, p_out) in SMALL_PRICES.items():
                small_cost = (q_in * p_in + s_out * p_out) / 1e6
                per_query = runs_small * small_cost + runs_large * large_cost
                row[case] = float(per_query.mean() * 1000)
            latency = runs_large * large_s + runs_small * small_s
            if policy != "all-large":
                latency = latency + timing["router_ms"] / 1e3
            if policy.startswith("cascade"):
                latency = latency + runs_small * timing["verifier_ms"] / 1e3
            row["p50_s"] = float(np.percentile(latency, 50))
            row["p95_s"] = float(np.percentile(latency, 95))
            rows[policy] = row
        seeds_out.append({"seed": seed, "n_test": len(test), "rows": rows})

    def mean_sd(values, fmt: str = ".3f") -> str:
        values = np.asarray(values, dtype=np.float64)
        return f"{values.mean():{fmt}} ± {values.std():{fmt}}"

    policies = list(seeds_out[0]["rows"])
    table = []
    for policy in policies:
        vals = [s["rows"][policy] for s in seeds_out]
        table.append(
            {
                "policy": policy,
                "large calls": mean_sd([v["large_share"] for v in vals]),
                "small calls": mean_sd([v["small_share"] for v in vals]),
                "quality drop": mean_sd([v["drop"] for v in vals]),
                **{f"$/1k {case[:3]}": mean_sd([v[case] for v in vals]) for case in SMALL_PRICES},
                "p50 s": mean_sd([v["p50_s"] for v in vals], ".2f"),
                "p95 s": mean_sd([v["p95_s"] for v in vals], ".2f"),
            }
        )
    small_price_b = SMALL_PRICES["(b) small at 1/20"]
    print(
        "\nAssumptions:\n"
        f"  data: routellm_gsm8k_answers ({len(data)} GSM8K questions; small {data.small_model}, large "
        f"{data.large_model}, graded correct/wrong); {len(seeds_out)} split seeds, 50/50, train_router on the "
        f"first half (det labels, default recipe), replayed on the {seeds_out[0]['n_test']}-query test half\n"
        f"  thresholds: the trained router's calibration tables (route-only: router.calibration; cascade: "
        f"router.cascade), max_quality_drop 1% and 5%; nothing chosen on the test half\n"
        f"  tokens: SmolLM2-135M tokenizer (BPE), recorded query = input, recorded answer = output (no chat "
        f"template); mean per query: input {tok_query.mean():.0f}, small answer {tok_small.mean():.0f}, large "
        f"answer {tok_large.mean():.0f}\n"
        f"  prices ($ per 1M input/output tokens): large {LARGE_PRICE[0]:.2f}/{LARGE_PRICE[1]:.2f} "
        f"({LARGE_PRICE_NAME}); small (a) 0/0 (local), (b) {small_price_b[0]:.3f}/{small_price_b[1]:.3f} (1/20); "
        "an escalated query pays both calls\n"
        f"  latency (end to end, cascade buffers the small answer until verified): router forward "
        f"{timing['router_ms']:.1f} ms, verifier {timing['verifier_ms']:.1f} ms (inputs "
        f"{'+'.join(timing['verifier_inputs'])}; measured, CPU, 1 thread, median of {timing['n_queries']}); small "
        f"model {SMALL_MODEL} measured ({small_speed['n_prompts']} prompts, 1 thread): TTFT "
        f"{small_speed['ttft_s']:.2f} s, {small_speed['tokens_per_s']:.1f} tokens/s, applied to the recorded "
        f"small answers' token counts; large model assumed: {LARGE_TTFT_S} s to first token + "
        f"{LARGE_TOKENS_PER_S:g} tokens/s\n"
    )
    print(f"GSM8K-answers test half, mean ± sd over {len(seeds_out)} seeds (shares of queries; $ per 1,000 queries)")
    print(format_table(table))

    result = {
        "assumptions": {
            "large_price_per_1m": LARGE_PRICE,
            "small_prices_per_1m": SMALL_PRICES,
            "large_ttft_s": LARGE_TTFT_S,
            "large_tokens_per_s": LARGE_TOKENS_PER_S,
            "small_model": small_speed,
            "router_timing": timing,
            "tokenizer": "SmolLM2-135M",
        },
        "table": table,
        "per_seed": seeds_out,
    }
    (out / "cascade_cost.json").write_text(json.dumps(result, indent=1))
    plot(seeds_out, policies, out / "cascade_cost.png")
    print(f"wrote {out}/cascade_cost.json and cascade_cost.png")


def plot(seeds_out: list[dict], policies: list[str], path: Path) -> None:
    """Cost per 1,000 queries for both price cases, and p50/p95 latency, per policy (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def mean(policy: str, key: str) -> float:
        return float(np.mean([s["rows"][policy][key] for s in seeds_out]))

    x = np.arange(len(policies))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, case in enumerate(SMALL_PRICES):
        ax1.bar(x + (k - 0.5) * 0.38, [mean(p, case) for p in policies], 0.38, label=case)
    ax1.set_ylabel("$ per 1,000 queries")
    ax1.set_title("cost (GSM8K-answers test halves)")
    for k, key in enumerate(("p50_s", "p95_s")):
        ax2.bar(x + (k - 0.5) * 0.38, [mean(p, key) for p in policies], 0.38, label=key.replace("_s", ""))
    ax2.set_ylabel("end-to-end latency (s)")
    ax2.set_title("latency")
    for ax in (ax1, ax2):
        ax.set_xticks(x, policies, rotation=30, ha="right", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
