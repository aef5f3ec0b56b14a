"""Throughput and latency of ``hybrid-llm serve`` at 1 and 2 worker processes (``--workers N``).

Starts stub OpenAI-compatible upstreams on 127.0.0.1 (``tests/reliability/serve_stubs.py``; they answer at once,
so the numbers measure the router and the server, not a model) and the real ``hybrid-llm serve`` process on a free
port, once per worker count. For each it measures two endpoints with ``--clients`` concurrent keep-alive clients:

- ``POST /v1/chat/completions`` (``model: "hybrid"``: the router scores every request, then the stub answers);
- ``POST /v1/route`` (the decision only, no model call: what a gateway asks).

Each measurement sends ``--requests`` requests (default 400) after a warm-up, and stops early after
``--max-seconds`` (default 40); the whole run stays under 5 minutes. The load generator runs on the same machine,
so on a small machine it competes with the server for the CPU. Prints one Markdown table.

    python benchmarks/serve_scale.py                 # ~2-4 minutes on 2 cores
    python benchmarks/serve_scale.py --requests 100  # a quick run
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "reliability"))
from serve_stubs import StubUpstream, wait_until  # noqa: E402

TOPICS = ("the French revolution", "quicksort", "photosynthesis", "compound interest", "the Pythagorean theorem")
ASKS = (
    "Explain {} briefly.",
    "Prove a key fact about {} step by step.",
    "Give an example of {}.",
    "Why does {} matter?",
)
ENDPOINTS = {"chat": "/v1/chat/completions", "route": "/v1/route"}


def body(i: int) -> dict[str, Any]:
    """A distinct request per ``i`` (no two texts alike, so nothing is measured from a cache)."""
    ask = ASKS[i % len(ASKS)].format(TOPICS[(i // len(ASKS)) % len(TOPICS)])
    return {"model": "hybrid", "messages": [{"role": "user", "content": f"{ask} (request {i})"}], "max_tokens": 16}


def start_server(stub: StubUpstream, workers: int, log: Any) -> tuple[subprocess.Popen, str]:
    """``hybrid-llm serve --workers N`` on a free port against ``stub``; (process, base URL)."""
    command = [
        sys.executable, "-m", "hybrid_router.cli", "serve",
        "--small", stub.url, "--small-model", "small:ok", "--large", stub.url, "--large-model", "large:ok",
        "--port", "0", "--workers", str(workers),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env)
    text = lambda: Path(log.name).read_text()  # noqa: E731
    if not wait_until(lambda: "serving on" in text() or process.poll() is not None, 240, 0.2):
        raise RuntimeError(f"serve did not start:\n{text()}")
    match = re.search(r"serving on (http://[\d.]+:\d+)/v1", text())
    if not match:
        raise RuntimeError(f"serve failed:\n{text()}")
    return process, match[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def measure(base: str, path: str, count: int, clients: int, max_seconds: float, offset: int) -> dict[str, Any]:
    """Send ``count`` requests from ``clients`` threads (stop after ``max_seconds``); req/s and latencies."""
    local = threading.local()
    deadline = time.perf_counter() + max_seconds

    def send(i: int) -> tuple[bool, float] | None:
        if time.perf_counter() > deadline:
            return None
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=30)
        started = time.perf_counter()
        try:
            ok = local.client.post(f"{base}{path}", json=body(offset + i)).status_code == 200
        except httpx.HTTPError:
            ok = False
        return ok, time.perf_counter() - started

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, range(-4 * clients, 0)))  # warm-up: connections, threads, every worker's encoder
        deadline = time.perf_counter() + max_seconds
        started = time.perf_counter()
        results = [r for r in pool.map(send, range(count)) if r is not None]
        wall = time.perf_counter() - started
    latencies = [s for ok, s in results if ok]
    return {
        "sent": len(results),
        "failed": sum(1 for ok, _ in results if not ok),
        "rps": len(latencies) / wall,
        "p50": percentile(latencies, 0.5) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
    }


def run(worker_counts: list[int], count: int, clients: int, max_seconds: float) -> list[dict[str, Any]]:
    """One row per (workers, endpoint)."""
    rows = []
    with StubUpstream() as stub:
        for workers in worker_counts:
            with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
                process, base = start_server(stub, workers, log)
                try:
                    for n, (name, path) in enumerate(ENDPOINTS.items()):
                        result = measure(base, path, count, clients, max_seconds, offset=100_000 * (workers + n))
                        rows.append({"workers": workers, "endpoint": path, **result})
                        print(f"  {workers} worker(s) {name}: {result['rps']:.0f} req/s", file=sys.stderr, flush=True)
                finally:
                    process.send_signal(signal.SIGTERM)
                    process.wait(30)
    return rows


def table(rows: list[dict[str, Any]], clients: int) -> str:
    """The Markdown table."""
    lines = ["| workers | endpoint | requests (failed) | req/s | p50 | p99 |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['workers']} | `{r['endpoint']}` | {r['sent']} ({r['failed']}) | {r['rps']:.0f} | "
            f"{r['p50']:.1f} ms | {r['p99']:.1f} ms |"
        )
    lines.append(
        f"\n{clients} concurrent keep-alive clients on the same machine ({os.cpu_count()} CPUs); stub upstreams."
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per measurement (default: 400)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default: 8)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default: 1 2)")
    parser.add_argument("--max-seconds", type=float, default=40, help="cap per measurement (default: 40)")
    args = parser.parse_args()
    rows = run(args.workers, args.requests, args.clients, args.max_seconds)
    print(table(rows, args.clients))
    return 1 if any(r["failed"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
