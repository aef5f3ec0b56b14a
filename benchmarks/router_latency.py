"""Router latency on CPU: ``HybridRouter.route()`` next to one raw forward pass of its encoder, and batch throughput.

For each encoder backend and thread count, a ~20-token and a ~100-token query are timed alternately through
(a) a raw forward pass (tokenize + model forward + mean pooling, no router code) and (b) ``route()``, so load
changes on a shared machine hit both alike; then ``score_batch`` throughput is measured on GSM8K questions.
Wall-clock p50/p95 are reported with the CPU time per call, the load average is printed before and after. All
configurations are measured twice, in order and then in reverse order, and the samples merged.

Usage: python benchmarks/router_latency.py [--backends torch onnx int8] [--threads 1 2] [--repeats 60]
                                            [--png runs/router_latency.png]
Targets (issue): route() p50 <= 1.2x the raw forward; a ~100-token query routed faster than the paper's 36 ms
(its DeBERTa router on a GPU).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hybrid_router import HybridRouter, load_routing_data  # noqa: E402
from hybrid_router.core.encoder import BACKENDS, Encoder  # noqa: E402
from hybrid_router.train.data import shipped_path  # noqa: E402

SHORT = "What is the capital of Australia, and why was it chosen over Sydney or Melbourne?"
LONG = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
    "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. "
    "How much in dollars does she make every day at the farmers' market? Explain your reasoning step by step, "
    "check the arithmetic twice, and give the final answer as a single number on its own line at the very end."
)
PAPER_MS = 36.0
MAX_OVERHEAD = 1.2
BATCH_QUERIES = 256


def raw_forward(encoder: Encoder) -> Callable[[str], np.ndarray]:
    """One bare forward pass of the encoder, without any router or Encoder.encode code."""
    if encoder.backend == "torch":

        def forward(text: str) -> np.ndarray:
            batch = encoder.tokenizer([text], return_tensors="pt")
            with torch.inference_mode():
                hidden = encoder.model(**batch).last_hidden_state
                return torch.nn.functional.normalize(hidden.mean(1), dim=-1).numpy()
    else:

        def forward(text: str) -> np.ndarray:
            batch = encoder.tokenizer([text], return_tensors="np")
            return encoder.onnx_model(batch["input_ids"], batch["attention_mask"])

    return forward


Samples = dict[str, dict[str, list[float]]]


def time_alternating(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 3) -> Samples:
    """Wall and CPU milliseconds (``{"wall": [...], "cpu": [...]}``) of each function, called in turn."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: Samples = {k: {"wall": [], "cpu": []} for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            samples[key]["wall"].append(1e3 * (time.perf_counter() - w0))
            samples[key]["cpu"].append(1e3 * (time.process_time() - c0))
    return samples


def summarize(sample: dict[str, list[float]]) -> dict[str, float]:
    """p50 and p95 of the wall times, median CPU time."""
    return {
        "p50": float(np.percentile(sample["wall"], 50)),
        "p95": float(np.percentile(sample["wall"], 95)),
        "cpu": float(np.median(sample["cpu"])),
    }


def router_with(backend: str, threads: int) -> HybridRouter:
    """The shipped default router, its encoder on ``backend`` (an ONNX encoder takes torch's thread count)."""
    torch.set_num_threads(threads)
    router = HybridRouter.default(backend=backend)
    assert router.encoder.backend == backend  # loads the encoder now, with this thread count
    return router


def batch_seconds(router: HybridRouter, queries: list[str]) -> float:
    """Seconds for one ``score_batch`` over ``queries``."""
    start = time.perf_counter()
    router.score_batch(queries)
    return time.perf_counter() - start


def measure(configs: list[tuple[str, int]], repeats: int, batch: list[str]) -> list[dict]:
    """Table rows for each (backend, threads): two passes, in order then in reverse, so load drift hits all alike."""
    routers = {c: router_with(*c) for c in configs}
    inputs = (("short", SHORT), ("long", LONG))
    samples: dict[tuple, Samples] = {}
    seconds: dict[tuple, list[float]] = {c: [] for c in configs}
    for order in (configs, configs[::-1]):
        for config in order:
            torch.set_num_threads(config[1])
            router = routers[config]
            raw = raw_forward(router.encoder)
            for label, text in inputs:
                got = time_alternating(
                    {"raw": lambda raw=raw, text=text: raw(text), "route": lambda r=router, text=text: r.route(text)},
                    repeats // 2,
                )
                for key, sample in got.items():
                    merged = samples.setdefault((config, label, key), {"wall": [], "cpu": []})
                    merged["wall"] += sample["wall"]
                    merged["cpu"] += sample["cpu"]
            router.score_batch(batch[:64])
            seconds[config].append(batch_seconds(router, batch))
    rows = []
    for config in configs:
        tokenizer = routers[config].encoder.tokenizer
        for label, text in inputs:
            rows.append(
                {
                    "backend": config[0],
                    "threads": config[1],
                    "input": label,
                    "tokens": len(tokenizer(text)["input_ids"]),
                    "raw": summarize(samples[config, label, "raw"]),
                    "route": summarize(samples[config, label, "route"]),
                }
            )
        rows.append(
            {
                "backend": config[0],
                "threads": config[1],
                "input": "batch",
                "qps": len(batch) / float(np.mean(seconds[config])),
            }
        )
    return rows


def format_rows(rows: list[dict]) -> str:
    """The printed table."""
    head = (
        f"{'backend':<8}{'thr':>4} {'input':<7}{'tok':>5} {'raw p50':>8}{'raw p95':>8} {'route p50':>9}"
        f"{'route p95':>10} {'route/raw':>9} {'cpu ms':>7}  {'batch q/s':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        start = f"{r['backend']:<8}{r['threads']:>4} {r['input']:<7}"
        if r["input"] == "batch":
            lines.append(f"{start}{'':>5} {'':>8}{'':>8} {'':>9}{'':>10} {'':>9} {'':>7}  {r['qps']:>9.1f}")
            continue
        raw, route = r["raw"], r["route"]
        lines.append(
            f"{start}{r['tokens']:>5} {raw['p50']:>8.1f}{raw['p95']:>8.1f} {route['p50']:>9.1f}"
            f"{route['p95']:>10.1f} {route['p50'] / raw['p50']:>9.2f} {route['cpu']:>7.1f}"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Bars of route() and raw-forward p50 (p95 whiskers) per configuration, with the paper's 36 ms line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    single = [r for r in rows if r["input"] != "batch"]
    labels = [f"{r['backend']}/{r['threads']}t\n{r['input']} ({r['tokens']} tok)" for r in single]
    x = np.arange(len(single))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(single)), 4.2))
    for offset, key, name in ((-0.2, "raw", "raw forward"), (0.2, "route", "route()")):
        p50 = np.array([r[key]["p50"] for r in single])
        p95 = np.array([r[key]["p95"] for r in single])
        ax.bar(x + offset, p50, 0.4, yerr=[np.zeros_like(p50), p95 - p50], capsize=3, label=f"{name} p50 (p95 bar)")
    ax.axhline(PAPER_MS, color="red", linestyle="--", label=f"paper: {PAPER_MS:.0f} ms/query (GPU)")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("ms per query")
    ax.set_title("hybrid-llm router latency on CPU")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--png", type=Path, default=Path("runs/router_latency.png"))
    args = parser.parse_args()
    batch = load_routing_data(shipped_path("routellm_gsm8k")).queries[:BATCH_QUERIES]
    load_before = os.getloadavg()
    rows = measure([(b, t) for b in args.backends for t in args.threads], args.repeats, batch)
    load_after = os.getloadavg()
    print(
        f"CPU cores: {os.cpu_count()}; load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
        f"(1 min); {args.repeats} timed calls per cell (two passes, configurations in order then reversed); "
        f"batch = {len(batch)} GSM8K questions, batch_size 64 (mean of the two passes)"
    )
    print(format_rows(rows))
    single = [r for r in rows if r["input"] != "batch"]
    overhead = max(r["route"]["p50"] / r["raw"]["p50"] for r in single)
    long_best = min((r for r in single if r["input"] == "long"), key=lambda r: r["route"]["p50"])
    print(
        f"target route/raw p50 <= {MAX_OVERHEAD}: worst {overhead:.2f} -> "
        f"{'met' if overhead <= MAX_OVERHEAD else 'MISSED'}"
    )
    print(
        f"target long query < {PAPER_MS:.0f} ms: best {long_best['route']['p50']:.1f} ms "
        f"({long_best['backend']}, {long_best['threads']} thread(s)) -> "
        f"{'met' if long_best['route']['p50'] < PAPER_MS else 'MISSED'}"
    )
    plot(rows, args.png)
    print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
