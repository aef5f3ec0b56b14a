"""Batch embedding + scoring throughput: the local engine vs Ray at 1 and 2 workers, and a cost model for N nodes.

Scores ``--rows`` shipped queries (GSM8K then MMLU, ``hybrid_router.train.data``) with the shipped router, the way
``hybrid-llm eval`` does (``router.score_texts``: the encoder embeds, the head scores):

- ``local``: in this process (``--engine local``), at 1 and at 2 torch threads;
- ``ray``: ``--engine ray`` on a local Ray cluster with 2 CPUs, at 1 and 2 workers (actors, one CPU each).

A Ray run's time includes starting its actors and loading the encoder in each; a first, one-batch job with the
same settings measures that start (and, in the worker, its memory: before the encoder loads, after, after a
64-row batch), so the table also gives the steady rate. Every run's scores are checked to equal the local ones.
Prints one Markdown table, the per-row encoder cost, the memory per worker and the cost model.

    python benchmarks/batch_scale.py               # 2000 rows, ~2-4 minutes on 2 cores
    python benchmarks/batch_scale.py --rows 4000   # the README's table (~7 minutes on 2 busy cores)
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hybrid_router.core.engine_encoder import EmbedBatch, router_on  # noqa: E402
from hybrid_router.core.engines import RayEngine  # noqa: E402
from hybrid_router.core.router import HybridRouter  # noqa: E402
from hybrid_router.train.data import shipped_path  # noqa: E402
from hybrid_router.train.data_io import load_routing_data  # noqa: E402

EMBEDDING_BYTES = 384 * 4


def queries(n: int) -> list[str]:
    texts: list[str] = []
    for name in ("routellm_gsm8k", "routellm_mmlu"):
        texts += load_routing_data(shipped_path(name)).queries
    return texts[:n]


def rss_mb() -> float:
    """This process's current resident memory (MB), from /proc (peak from getrusage where /proc is missing)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class MeasuredEmbed(EmbedBatch):
    """:class:`EmbedBatch` that also reports the worker's memory: before the encoder, after it, after the batch."""

    def __init__(self, encoder):
        self.before = rss_mb()
        super().__init__(encoder)
        self.loaded = rss_mb()

    def __call__(self, batch):
        out = super().__call__(batch)
        n = len(out["embedding"])
        after = rss_mb()
        return {**out, "mb": np.tile([self.before, self.loaded, after], (n, 1))}


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    import torch

    texts = queries(args.rows)
    n = len(texts)
    mean_chars = float(np.mean([len(t) for t in texts]))
    router = HybridRouter.default()
    router.score_texts(texts[:64])  # load the encoder before timing
    rows: list[dict] = []
    reference = None
    for threads in (1, 2):
        torch.set_num_threads(threads)
        seconds, scores = timed(router.score_texts, texts)
        reference = scores if reference is None else reference
        rows.append({"engine": "local", "workers": f"1 process, {threads} thread(s)", "total": seconds, "start": 0.0})
        assert np.array_equal(scores, reference)
    torch.set_num_threads(1)
    head_seconds, _ = timed(router.score_embeddings, np.zeros((n, 384), np.float32), texts)
    local_mb = rss_mb()

    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    memory = None
    try:
        for workers in (1, 2):
            engine = RayEngine(workers=workers)
            on_ray = router_on(HybridRouter.default(), engine)
            probe = {"text": [texts[i % n] for i in range(64 * workers)]}
            settings = {"encoder": on_ray.encoder.settings()}
            start, measured = timed(engine.map_batches, MeasuredEmbed, probe, batch_size=64, fn_kwargs=settings)
            memory = measured["mb"][0] if memory is None else memory
            seconds, scores = timed(on_ray.score_texts, texts)
            assert np.array_equal(scores, reference), "Ray scores differ from the local engine's"
            rows.append({"engine": "ray", "workers": f"{workers} actor(s)", "total": seconds, "start": start})
    finally:
        ray.shutdown()

    print(f"\n{n} queries (GSM8K + MMLU, {mean_chars:.0f} characters on average), shipped router (MiniLM, 6 layers), ")
    print(f"{os.cpu_count()} CPUs; scores identical to the local engine in every run\n")
    print("| engine | workers | rows/s (whole run) | job start (s) | rows/s (steady) |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        steady = n / max(r["total"] - r["start"], 1e-9)
        start = f"{r['start']:.1f}" if r["engine"] == "ray" else "-"
        print(f"| {r['engine']} | {r['workers']} | {n / r['total']:.0f} | {start} | {steady:.0f} |")
    per_row_ms = rows[0]["total"] / n * 1e3
    ray_one = n / max(rows[2]["total"] - rows[2]["start"], 1e-9)
    ray_two = n / max(rows[3]["total"] - rows[3]["start"], 1e-9)
    before, loaded, after = memory
    print(
        f"\nencoder cost per row: {per_row_ms:.2f} ms on one core (local, 1 thread); the head on the driver: "
        f"{head_seconds / n * 1e6:.1f} us per row"
    )
    print(
        f"memory per Ray worker (resident): {before:.0f} MB before the encoder (Python, Ray), {loaded:.0f} MB with "
        f"it (+{loaded - before:.0f} MB: torch, transformers, weights), {after:.0f} MB after a 64-row batch "
        f"(+{after - loaded:.0f} MB); this process (local engine, after {n} rows): {local_mb:.0f} MB"
    )
    print(
        f"""
## Cost model for N nodes

- Work per row: one encoder forward, {per_row_ms:.2f} ms of one core here (MiniLM-L6, {mean_chars:.0f}-character
  queries; it grows with text length up to the 256-token cut, and a 3-layer router costs about half). The head,
  verifier and calibration run on the driver, on the embeddings: {head_seconds / n * 1e6:.1f} us a row.
- One worker = one actor with one CPU and its own encoder: {ray_one:.0f} rows/s here at 1 worker,
  {ray_two:.0f} rows/s at 2 ({ray_two / max(ray_one, 1e-9):.2f}x; 2 workers on 2 cores also share them with
  the driver and the object store).
- N nodes with W workers each: rows/s ~= N x W x (per-worker rate), plus a fixed start per job (actors start and
  load the encoder: {rows[2]["start"]:.0f}-{rows[3]["start"]:.0f} s here, a few seconds on an idle machine) that
  matters only for small jobs.
- Memory per worker ~= {loaded:.0f} MB (runtime + encoder) + a batch's activations ({after - loaded:.0f} MB at 64
  rows): size W by cores first; memory binds only on small-RAM nodes.
- Where the bottleneck moves: every row leaves the driver (text) and comes back ({EMBEDDING_BYTES} bytes of
  embedding), and the driver reads the log or data file and writes the scores. The driver's own cost per row
  (read, ship, collect, head: tens of us, an estimate) caps the cluster at roughly 10^4-10^5 rows/s: past
  N x W ~= that / per-worker rate (~{max(int(2e4 / max(ray_one, 1e-9)), 1)} workers of this speed for
  2 x 10^4 rows/s) more nodes stop helping, and the log read (score-log: SQLite or PostgreSQL) or the driver's
  memory (all embeddings of a train/eval job, {EMBEDDING_BYTES} bytes a row: 1.5 GB per million rows) is the
  limit. score-log grades in chunks of 4096 groups, so its driver memory stays flat.
"""
    )


if __name__ == "__main__":
    main()
