"""Router compression: ONNX, int8 and layer-dropped encoders against the float32 torch encoder, speed and quality.

Variants are ``backend`` or ``backend/layers``: ``onnx`` (float32 ONNX Runtime), ``int8`` (ONNX Runtime dynamic
int8), and e.g. ``int8/4`` (int8 with only the first 4 of MiniLM's 6 layers: ``Encoder(layers=4)``).

Speed: ``Encoder.encode`` on the same ~20- and ~100-token queries as ``benchmarks/router_latency.py`` (variants timed
alternately, so load changes hit all alike), plus batch throughput on GSM8K questions; wall-clock p50 and CPU time.
Quality: the shipped GSM8K routing data split 50/50 by query, for ``--seeds`` split seeds (seed 0 is the fixed split
of ``benchmarks/routing_quality.py``). The reference is ``train_router``'s default recipe on the float32 torch
embeddings of the whole encoder (the paper's router, depth search off), trained on the first half and scored on
the second. Each variant gets its own router trained the same way on its own
embeddings ("own head"); a full-depth variant is also scored with the reference head unchanged ("fp32 head": what
switching an existing router's backend does). APGR loss = reference APGR - variant APGR (negative: a gain).
Every query is embedded alone, as ``route()`` does; embeddings are cached under ``scratch/router_compression/``.

Usage: python benchmarks/router_compression.py [--variants onnx int8 torch/3 int8/3] [--threads 1] [--repeats 40]
                                               [--seeds 5]
Target (issue): >= 1.5x faster than the float32 encoder, APGR loss <= 0.01.
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
from router_latency import BATCH_QUERIES, LONG, SHORT, summarize, time_alternating  # noqa: E402

from hybrid_router import HybridRouter, load_routing_data  # noqa: E402
from hybrid_router.core.encoder import DEFAULT_ENCODER, Encoder  # noqa: E402
from hybrid_router.train.data import shipped_path  # noqa: E402
from hybrid_router.train.evaluation import evaluate_scores, format_table  # noqa: E402
from hybrid_router.train.training import train_router  # noqa: E402

CACHE = Path("scratch/router_compression")
REFERENCE = "torch"
MIN_SPEEDUP = 1.5
MAX_APGR_LOSS = 0.01


def parse_variant(variant: str) -> tuple[str, int | None]:
    """``"int8/4"`` -> ``("int8", 4)``; ``"onnx"`` -> ``("onnx", None)``."""
    backend, _, layers = variant.partition("/")
    return backend, int(layers) if layers else None


def make_encoder(variant: str, threads: int) -> Encoder:
    backend, layers = parse_variant(variant)
    return Encoder(DEFAULT_ENCODER, backend=backend, threads=threads, layers=layers)


class StoredEncoder(Encoder):
    """A variant's encoder whose per-text embeddings (each text embedded alone) are kept in an ``.npz`` file."""

    def __init__(self, variant: str, threads: int):
        self.variant, self.threads = variant, threads
        self.backend, self.layers = parse_variant(variant)
        self.name, self._encoder = DEFAULT_ENCODER, None
        self.file = CACHE / f"gsm8k_{variant.replace('/', '_L')}.npz"
        self.table: dict[str, np.ndarray] = {}
        if self.file.is_file():
            with np.load(self.file) as stored:
                self.table = dict(zip(stored["texts"].tolist(), stored["vectors"]))

    @property
    def dim(self) -> int:
        return 384

    def encode(self, texts, *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        texts = list(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self.table]
        if missing:
            self._encoder = self._encoder or make_encoder(self.variant, self.threads)
            self.table.update(zip(missing, self._encoder.encode(missing, batch_size=1, progress=progress)))
            self.file.parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.file, texts=np.array(list(self.table)), vectors=np.stack(list(self.table.values())))
        return np.stack([self.table[t] for t in texts])


def speed(variants: list[str], threads: int, repeats: int, batch: list[str]) -> tuple[str, dict[str, float]]:
    """Table of single-query p50/p95 and batch throughput per variant, and each variant's worst speed-up."""
    torch.set_num_threads(threads)
    encoders = {v: make_encoder(v, threads) for v in variants}
    head = f"{'variant':<8} {'input':<6} {'p50 ms':>8} {'p95 ms':>7} {'cpu ms':>7} {'speed-up':>8} {'cpu speed-up':>12}"
    lines = [head, "-" * len(head)]
    speedups: dict[str, list[float]] = {v: [] for v in variants}
    for label, text in (("short", SHORT), ("long", LONG)):
        samples = time_alternating({v: (lambda e=e, text=text: e.encode([text])) for v, e in encoders.items()}, repeats)
        stats = {v: summarize(sample) for v, sample in samples.items()}
        ref = stats[REFERENCE]
        for v in variants:
            s = stats[v]
            speedups[v].append(ref["p50"] / s["p50"])
            lines.append(
                f"{v:<8} {label:<6} {s['p50']:>8.1f} {s['p95']:>7.1f} {s['cpu']:>7.1f} {speedups[v][-1]:>7.2f}x"
                f" {ref['cpu'] / s['cpu']:>11.2f}x"
            )
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    for e in encoders.values():
        e.encode(batch[:64])
    for _ in range(3):  # rounds over all variants, so load changes hit all alike
        for v, e in encoders.items():
            c0, w0 = time.process_time(), time.perf_counter()
            e.encode(batch)
            seconds[v].append(time.perf_counter() - w0)
            cpu[v].append(time.process_time() - c0)
    for v in variants:
        speedups[v].append(np.median(seconds[REFERENCE]) / np.median(seconds[v]))
        lines.append(
            f"{v:<8} {'batch':<6} {len(batch) / np.median(seconds[v]):>8.1f} {'q/s':>7} "
            f"{1e3 * np.median(cpu[v]) / len(batch):>7.1f} {speedups[v][-1]:>7.2f}x"
            f" {np.median(cpu[REFERENCE]) / np.median(cpu[v]):>11.2f}x"
        )
    return "\n".join(lines), {v: min(s) for v, s in speedups.items()}


def quality(variants: list[str], threads: int, seeds: int) -> tuple[str, dict[str, float]]:
    """Table of held-out GSM8K APGR per router (seed 0, and mean over seeds), and each variant's worst mean loss."""
    data = load_routing_data(shipped_path("routellm_gsm8k"))
    encoders = {v: StoredEncoder(v, threads) for v in variants}
    apgr: dict[str, list[float]] = {}
    for seed in range(seeds):
        train, test = data.split(0.5, seed=seed)
        small_q, large_q = test.mean_small(), test.mean_large()
        reference = train_router(train, encoder=encoders[REFERENCE], seed=seed, depths=None).router
        runs = {f"{REFERENCE} (reference)": reference.score_texts(test.queries)}
        for v in variants[1:]:
            if encoders[v].layers is None:
                runs[f"{v}, fp32 head"] = HybridRouter(reference.head, encoder=encoders[v]).score_texts(test.queries)
            own = train_router(train, encoder=encoders[v], seed=seed, depths=None).router
            runs[f"{v}, own head"] = own.score_texts(test.queries)
        for name, scores in runs.items():
            apgr.setdefault(name, []).append(evaluate_scores(name, scores, small_q, large_q).apgr)
    ref = np.array(apgr[f"{REFERENCE} (reference)"])
    rows = [
        {
            "router": name,
            "APGR seed 0": values[0],
            f"APGR mean of {seeds}": float(np.mean(values)),
            "loss seed 0": ref[0] - values[0],
            f"loss mean of {seeds}": float(np.mean(ref - values)),
            "loss sd": float(np.std(ref - values)),
        }
        for name, values in apgr.items()
    ]
    worst = {v: max(r[f"loss mean of {seeds}"] for r in rows if r["router"].split(",")[0] == v) for v in variants[1:]}
    header = (
        f"GSM8K held-out halves ({len(data)} queries split 50/50, seeds 0..{seeds - 1}): train_router's default "
        "recipe with its own 80/20 calibration split; every query embedded alone"
    )
    return f"{header}\n{format_table(rows)}", worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["onnx", "int8", "torch/3", "onnx/3", "int8/3", "int8/4"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    variants = list(dict.fromkeys([REFERENCE, *args.variants]))
    batch = load_routing_data(shipped_path("routellm_gsm8k")).queries[:BATCH_QUERIES]
    load_before = os.getloadavg()
    speed_table, speedups = speed(variants, args.threads, args.repeats, batch)
    load_after = os.getloadavg()
    quality_table, losses = quality(variants, args.threads, args.seeds)
    print(
        f"CPU cores: {os.cpu_count()}; {args.threads} thread(s); load average during speed runs "
        f"{load_before[0]:.2f} -> {load_after[0]:.2f} (1 min); {args.repeats} timed calls per cell"
    )
    print(speed_table)
    print()
    print(quality_table)
    for v in variants[1:]:
        ok_speed, ok_loss = speedups[v] >= MIN_SPEEDUP, losses[v] <= MAX_APGR_LOSS
        print(
            f"{v}: worst speed-up {speedups[v]:.2f}x (target >= {MIN_SPEEDUP}x: {'met' if ok_speed else 'MISSED'});"
            f" worst mean APGR loss {losses[v]:+.4f} (target <= {MAX_APGR_LOSS}: {'met' if ok_loss else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
