"""Router compression: the ONNX fp32 and int8 encoder backends against the float32 torch encoder, speed and quality.

Speed: ``Encoder.encode`` on the same ~20- and ~100-token queries as ``benchmarks/router_latency.py`` (backends
timed alternately, so load changes hit all alike), plus batch throughput on GSM8K questions.
Quality: the shipped GSM8K routing data split 50/50 (``RoutingData.split(0.5, seed=0)``). A router is trained on
the first half with ``train_router``'s default recipe on float32 embeddings; the held-out half is then scored with
that same head on each backend's embeddings (what switching an existing router's backend does). A router trained
on each backend's own embeddings is scored too. Every query is embedded alone, as ``route()`` does; embeddings are
cached under ``scratch/router_compression/`` (git-ignored).

Usage: python benchmarks/router_compression.py [--backends torch onnx int8] [--threads 1] [--repeats 40]
Target (issue): int8 >= 1.5x faster than the float32 encoder, APGR loss <= 0.01.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from router_latency import BATCH_QUERIES, LONG, SHORT, time_alternating  # noqa: E402

from hybrid_router import HybridRouter, load_routing_data  # noqa: E402
from hybrid_router.data import shipped_path  # noqa: E402
from hybrid_router.encoder import BACKENDS, DEFAULT_ENCODER, Encoder  # noqa: E402
from hybrid_router.evaluation import evaluate_scores, evaluate_with_references, format_table  # noqa: E402
from hybrid_router.training import train_router  # noqa: E402

CACHE = Path("scratch/router_compression")
MIN_SPEEDUP = 1.5
MAX_APGR_LOSS = 0.01


class StoredEncoder(Encoder):
    """An encoder whose per-text embeddings (each text embedded alone) are kept in an ``.npz`` file."""

    def __init__(self, backend: str, threads: int):
        super().__init__(DEFAULT_ENCODER, backend=backend, threads=threads)
        self.file = CACHE / f"gsm8k_{backend}.npz"
        self.table: dict[str, np.ndarray] = {}
        if self.file.is_file():
            with np.load(self.file) as stored:
                self.table = dict(zip(stored["texts"].tolist(), stored["vectors"]))

    def encode(self, texts, *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        texts = list(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self.table]
        if missing:
            self.table.update(zip(missing, super().encode(missing, batch_size=1, progress=progress)))
            self.file.parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.file, texts=np.array(list(self.table)), vectors=np.stack(list(self.table.values())))
        return np.stack([self.table[t] for t in texts])


def speed(backends: list[str], threads: int, repeats: int, batch: list[str]) -> tuple[str, dict[str, float]]:
    """Table of single-query p50/p95 and batch throughput per backend, and each backend's worst speed-up over torch."""
    torch.set_num_threads(threads)
    encoders = {b: Encoder(DEFAULT_ENCODER, backend=b, threads=threads) for b in backends}
    lines = [f"{'backend':<8} {'input':<6} {'p50 ms':>8} {'p95 ms':>7} {'cpu ms':>7} {'speed-up':>8}"]
    lines.append("-" * len(lines[0]))
    speedups: dict[str, list[float]] = {b: [] for b in backends}
    for label, text in (("short", SHORT), ("long", LONG)):
        stats = time_alternating({b: (lambda e=e: e.encode([text])) for b, e in encoders.items()}, repeats)
        for b in backends:
            s = stats[b]
            speedups[b].append(stats["torch"]["p50"] / s["p50"])
            lines.append(f"{b:<8} {label:<6} {s['p50']:>8.1f} {s['p95']:>7.1f} {s['cpu']:>7.1f} {speedups[b][-1]:>7.2f}x")
    rates = {}
    for b, e in encoders.items():
        e.encode(batch[:64])
        start = time.perf_counter()
        e.encode(batch)
        rates[b] = len(batch) / (time.perf_counter() - start)
    for b in backends:
        speedups[b].append(rates[b] / rates["torch"])
        lines.append(f"{b:<8} {'batch':<6} {rates[b]:>8.1f} q/s{'':>12}{speedups[b][-1]:>7.2f}x")
    return "\n".join(lines), {b: min(v) for b, v in speedups.items()}


def quality(backends: list[str], threads: int) -> tuple[str, dict[str, float]]:
    """Table of APGR etc. on the held-out GSM8K half, and the APGR of each backend with the float32-trained head."""
    data = load_routing_data(shipped_path("routellm_gsm8k"))
    train, test = data.split(0.5, seed=0)
    encoders = {b: StoredEncoder(b, threads) for b in backends}
    small_q, large_q = test.mean_small(), test.mean_large()
    head = train_router(train, encoder=encoders["torch"]).router.head
    fp32_scores = HybridRouter(head, encoder=encoders["torch"]).score_texts(test.queries)
    reports = evaluate_with_references(fp32_scores, small_q, large_q, name="fp32 head / torch")
    apgr, notes, median = {"torch": reports[1].apgr}, [], float(np.median(fp32_scores))
    for b in backends[1:]:
        scores = HybridRouter(head, encoder=encoders[b]).score_texts(test.queries)
        report = evaluate_scores(f"fp32 head / {b}", scores, small_q, large_q)
        own = train_router(train, encoder=encoders[b]).router
        reports[-1:-1] = [report, evaluate_scores(f"{b} head / {b}", own.score_texts(test.queries), small_q, large_q)]
        apgr[b] = report.apgr
        same = np.mean((scores >= median) == (fp32_scores >= median))
        notes.append(f"{b}: max |score - fp32 score| {np.max(np.abs(scores - fp32_scores)):.4f}; at the fp32 median "
                     f"threshold {same:.1%} of decisions unchanged, large share {np.mean(scores < median):.1%} (fp32: 50%)")
    rows = [r.row() for r in reports]
    for row in rows:
        row["APGR loss"] = apgr["torch"] - row["APGR"] if row["router"] not in ("random", "oracle") else float("nan")
    header = (f"GSM8K held-out half: {len(test)} queries (trained on {len(train)}; "
              f"train_router default recipe, its own 80/20 calibration split)")
    return "\n".join([header, format_table(rows), *notes]), apgr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    backends = list(dict.fromkeys(["torch", *args.backends]))
    batch = load_routing_data(shipped_path("routellm_gsm8k")).queries[:BATCH_QUERIES]
    load_before = os.getloadavg()
    speed_table, speedups = speed(backends, args.threads, args.repeats, batch)
    load_after = os.getloadavg()
    quality_table, apgr = quality(backends, args.threads)
    print(f"CPU cores: {os.cpu_count()}; {args.threads} thread(s); load average during speed runs "
          f"{load_before[0]:.2f} -> {load_after[0]:.2f} (1 min); {args.repeats} timed calls per cell")
    print(speed_table)
    print()
    print(quality_table)
    for b in backends[1:]:
        loss = apgr["torch"] - apgr[b]
        print(f"{b}: worst speed-up {speedups[b]:.2f}x (target >= {MIN_SPEEDUP}x: "
              f"{'met' if speedups[b] >= MIN_SPEEDUP else 'MISSED'}); APGR loss {loss:+.4f} "
              f"(target <= {MAX_APGR_LOSS}: {'met' if loss <= MAX_APGR_LOSS else 'MISSED'})")


if __name__ == "__main__":
    main()
