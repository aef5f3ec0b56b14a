"""Soak test of ``hybrid-llm serve``: mixed traffic with injected upstream faults; nothing lost, nothing leaked.

Starts a deliberately faulty OpenAI-compatible upstream (``tests/reliability/serve_stubs.py``) and the real
``hybrid-llm serve`` process on 127.0.0.1 (small model: the upstream, asked to fail per request; large model: the
same upstream, always healthy; ``--timeout 2``), then sends ``--requests`` requests (default 2,000) from
``--clients`` threads: half streaming, a mix of forced and score-routed models, and about 10% faults (HTTP 500,
hangs, streams cut mid-way, malformed 200s, clients that disconnect after the first chunk).

Every request must end as an answer or a clean error (an OpenAI error body, or an SSE error event for a stream
cut after output): anything else (a client timeout, a broken response) is *lost*. The server's threads and open
sockets are counted (``/proc``) after a warm-up and again after the run, with the upstream connections still
open. Prints one table (Markdown).

    python benchmarks/soak.py                # 2,000 requests, ~1-3 minutes on 2 cores
    python benchmarks/soak.py --requests 300 # a quick run
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "reliability"))
from serve_stubs import StubUpstream, connections_to, disconnect_after_first_chunk, wait_until  # noqa: E402

#: Injected faults and their share of requests (10% in all); the rest ask for a healthy answer ("ok").
FAULTS = {"err500": 0.02, "hang": 0.02, "nodone": 0.02, "foo": 0.02, "disconnect": 0.02}
MODELS = ("hybrid:small", "hybrid:small", "hybrid:large", "hybrid")
CLIENT_TIMEOUT = 30.0


def plan(count: int, seed: int) -> list[dict[str, Any]]:
    """The requests: kind (a fault or "ok"), model, stream."""
    rng = random.Random(seed)
    kinds, weights = zip(*FAULTS.items())
    requests = []
    for _ in range(count):
        roll = rng.random()
        kind = "ok"
        if roll < sum(weights):
            kind = rng.choices(kinds, weights)[0]
        stream = kind == "disconnect" or rng.random() < 0.5
        model = "hybrid:small" if kind != "ok" else rng.choice(MODELS)
        requests.append({"kind": kind, "model": model, "stream": stream})
    return requests


def server_resources(pid: int) -> tuple[int, int]:
    """(threads, open sockets) of process ``pid``."""
    threads = int(re.search(r"^Threads:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)[1])
    sockets = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            sockets += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:  # closed meanwhile
            pass
    return threads, sockets


def start_server(stub: StubUpstream, log: Any) -> tuple[subprocess.Popen, str]:
    """``hybrid-llm serve`` on a free port against ``stub``; (process, base URL)."""
    command = [
        sys.executable, "-m", "hybrid_router.cli", "serve",
        "--small", stub.url, "--small-model", "small", "--large", stub.url, "--large-model", "large:ok",
        "--port", "0", "--timeout", "2",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    text = lambda: Path(log.name).read_text()  # noqa: E731
    if not wait_until(lambda: "serving on" in text() or process.poll() is not None, 180, 0.2):
        raise RuntimeError(f"serve did not start:\n{text()}")
    match = re.search(r"serving on (http://[\d.]+:\d+)/v1", text())
    if not match:
        raise RuntimeError(f"serve failed:\n{text()}")
    return process, match[1]


def outcome(response: httpx.Response, stream: bool) -> str:
    """ "answer", "error" (a clean error) or "lost"."""
    if response.status_code != 200:
        try:
            return "error" if response.json()["error"]["message"] else "lost"
        except (ValueError, KeyError, TypeError):
            return "lost"
    if not stream:
        try:
            return "answer" if response.json()["choices"][0]["message"] is not None else "lost"
        except (ValueError, KeyError, TypeError, IndexError):
            return "lost"
    events = [e.removeprefix("data: ") for e in response.text.strip().split("\n\n") if e]
    if events and events[-1] == "[DONE]":
        return "answer"
    try:
        return "error" if json.loads(events[-1])["error"]["message"] else "lost"
    except (ValueError, KeyError, TypeError, IndexError):
        return "lost"


def send(base: str, request: dict[str, Any], local: threading.local) -> tuple[str, float]:
    """Send one request; (outcome, seconds)."""
    content = "pause" if request["kind"] == "disconnect" else request["kind"]
    body = {"model": request["model"], "messages": [{"role": "user", "content": content}], "stream": request["stream"]}
    started = time.perf_counter()
    try:
        if request["kind"] == "disconnect":
            got = disconnect_after_first_chunk(base, body, timeout=CLIENT_TIMEOUT)
            return ("disconnected" if b"data:" in got else "lost"), time.perf_counter() - started
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=CLIENT_TIMEOUT)
        response = local.client.post(f"{base}/v1/chat/completions", json=body)
        return outcome(response, request["stream"]), time.perf_counter() - started
    except (httpx.HTTPError, OSError):
        return "lost", time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def soak(count: int, clients: int, seed: int) -> dict[str, Any]:
    """Run the soak; the numbers for the table."""
    with StubUpstream() as stub, tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        process, base = start_server(stub, log)
        try:
            local = threading.local()
            with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                warm_up = [r for r in plan(count, seed + 1) if r["kind"] == "ok"][: 5 * clients]
                list(pool.map(lambda r: send(base, r, local), warm_up))  # pools, threads, the router's encoder
                before = server_resources(process.pid)
                requests = plan(count, seed)
                started = time.perf_counter()
                results = list(pool.map(lambda r: send(base, r, local), requests))
            wall = time.perf_counter() - started
            wait_until(lambda: stub.active == 0 and connections_to(stub.port) == 0, 15, 0.2)
            wait_until(lambda: all(a <= b for a, b in zip(server_resources(process.pid), before)), 10, 0.2)
            after = server_resources(process.pid)
            upstream_open = connections_to(stub.port)
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(30)
    healthy = [s for r, (o, s) in zip(requests, results) if r["kind"] == "ok" and o == "answer"]
    return {
        "requests": count,
        "streaming": sum(r["stream"] for r in requests),
        "faults": Counter(r["kind"] for r in requests if r["kind"] != "ok"),
        "outcomes": Counter(o for o, _ in results),
        "healthy_failed": sum(1 for r, (o, _) in zip(requests, results) if r["kind"] == "ok" and o != "answer"),
        "before": before,
        "after": after,
        "upstream_open": upstream_open,
        "p50": percentile(healthy, 0.5) * 1000,
        "p99": percentile(healthy, 0.99) * 1000,
        "wall": wall,
        "exit": code,
        "clients": clients,
    }


def table(r: dict[str, Any]) -> str:
    """The Markdown table."""
    faults = ", ".join(f"{k} {v}" for k, v in sorted(r["faults"].items()))
    o = r["outcomes"]
    rows = [
        ("requests (streaming)", f"{r['requests']} ({r['streaming']}), {r['clients']} concurrent clients"),
        ("injected faults", f"{sum(r['faults'].values())}: {faults}"),
        ("answered", str(o["answer"])),
        ("clean errors (OpenAI error body / SSE error event)", str(o["error"])),
        ("client disconnects (on purpose)", str(o["disconnected"])),
        ("**lost**", f"**{o['lost']}**"),
        ("healthy requests not answered", str(r["healthy_failed"])),
        ("server threads before -> after", f"{r['before'][0]} -> {r['after'][0]}"),
        ("server sockets before -> after", f"{r['before'][1]} -> {r['after'][1]}"),
        ("upstream connections left open", str(r["upstream_open"])),
        ("healthy latency p50 / p99", f"{r['p50']:.1f} ms / {r['p99']:.1f} ms"),
        ("wall time", f"{r['wall']:.1f} s ({r['requests'] / r['wall']:.0f} req/s)"),
        ("server exit on SIGTERM", str(r["exit"])),
    ]
    return "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = soak(args.requests, args.clients, args.seed)
    print(table(result))
    leaked = result["after"][0] > result["before"][0] or result["after"][1] > result["before"][1]
    return 1 if result["outcomes"]["lost"] or leaked or result["upstream_open"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
