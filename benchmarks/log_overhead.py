"""How much the routing log adds to a call: time spent in ``log_call`` on the caller's thread, and write throughput.

Usage: python benchmarks/log_overhead.py [--calls 20000] [--log postgresql://user@host:port/db]
(default: a SQLite file in a temporary folder; ``--log`` measures a PostgreSQL log instead, appending to it)
Target (issue): never slow a call by more than 1 ms on average.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from hybrid_router import Answered, RouteDecision
from hybrid_router.traffic.routing_log import RoutingLog, read_calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--log", default=None, help="a postgresql:// URL to measure instead of a SQLite file")
    args = parser.parse_args()
    answered = Answered(RouteDecision("small", 0.7, 0.5, "kwarg:quality_threshold", 0.5), "small", None, ("s", "l"))
    convo = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Explain the difference between a list and a tuple in Python. " * 4},
    ]
    answer = "A list is mutable; a tuple is not. " * 10
    with tempfile.TemporaryDirectory() as tmp:
        path = args.log or Path(tmp) / "log.db"
        if args.log:
            RoutingLog(path).close()  # creates the tables in a new database
        before = sum(1 for _ in read_calls(path)) if args.log else 0
        with RoutingLog(path, shadow_rate=0.0) as log:
            per_call = []
            for _ in range(args.calls):
                start = time.perf_counter()
                log.log_call(convo, answered, answer, input_tokens=60, output_tokens=90, latency_s=0.5)
                per_call.append(time.perf_counter() - start)
            start = time.perf_counter()
            log.flush(timeout=300)
            drain = time.perf_counter() - start
        rows = sum(1 for _ in read_calls(path)) - before
    total = sum(per_call)
    per_call.sort()
    print(f"{'metric':<34} value")
    print(f"{'-' * 34} {'-' * 12}")
    print(f"{'calls logged':<34} {rows}")
    print(f"{'mean time in log_call (ms)':<34} {1000 * statistics.fmean(per_call):.4f}")
    print(
        f"{'p50 / p99 in log_call (ms)':<34} {1000 * per_call[len(per_call) // 2]:.4f} / "
        f"{1000 * per_call[int(len(per_call) * 0.99)]:.4f}"
    )
    print(f"{'write throughput (rows/s)':<34} {rows / (total + drain):,.0f}")
    print(f"{'target: mean <= 1 ms':<34} {'met' if statistics.fmean(per_call) <= 1e-3 else 'MISSED'}")


if __name__ == "__main__":
    main()
