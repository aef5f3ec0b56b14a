"""``hybrid-llm serve --workers N`` as a real process (issue 15, part 3): every worker answers, SIGHUP restarts them,
SIGTERM stops them all.

The real CLI runs on a free port with stub upstreams on 127.0.0.1; ``/health``'s ``x-hybrid-worker`` header names
the process that answered. Bad flags and a worker that cannot start stay one error line.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hybrid_router.core.options import RoutingOptions

from .serve_stubs import StubUpstream, wait_until

SERVE = [sys.executable, "-m", "hybrid_router.cli", "serve"]
KEY = "router-key-workers-42"
MESSAGES = [{"role": "user", "content": "ok, what is the derivative of x^3 sin(x)?"}]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def parent_of(pid: int) -> int:
    return int(re.search(r"^PPid:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)[1])


def worker_pids(base: str, want: int, attempts: int = 400) -> set[int]:
    """PIDs seen in ``/health``'s ``x-hybrid-worker``, from concurrent new connections, until ``want`` are seen."""
    seen: set[int] = set()

    def health(_: int) -> int:
        return int(httpx.get(f"{base}/health", timeout=10).headers["x-hybrid-worker"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(attempts // 40):
            seen.update(pool.map(health, range(40)))
            if len(seen) >= want:
                break
    return seen


def test_two_workers_both_answer_and_sigterm_stops_all(tmp_path: Path, default_router):
    log = tmp_path / "serve.log"
    with StubUpstream() as stub, open(log, "w") as log_fh:
        command = [
            *SERVE,
            "--small", stub.url, "--small-model", "small",
            "--large", stub.url, "--large-model", "large:ok",
            "--port", "0", "--workers", "2", "--timeout", "5",
        ]  # fmt: skip
        env = {**os.environ, "HYBRID_LLM_API_KEY": KEY, "HF_HUB_OFFLINE": "1"}
        process = subprocess.Popen(command, stdout=log_fh, stderr=subprocess.STDOUT, env=env)
        pids: set[int] = set()
        try:
            assert wait_until(lambda: "serving on" in log.read_text() or process.poll() is not None, 240, 0.2)
            match = re.search(r"serving on (http://127\.0\.0\.1:(\d+))/v1 \((.*)\)", log.read_text())
            assert match and int(match[2]) > 0, log.read_text()
            assert "2 workers" in match[3] and "small: small" in match[3] and "API key required" in match[3]
            base, auth = match[1], {"authorization": f"Bearer {KEY}"}

            pids = worker_pids(base, 2)
            assert len(pids) == 2, pids
            assert all(parent_of(pid) == process.pid for pid in pids) and process.pid not in pids

            body = {"model": "hybrid:0.5", "messages": MESSAGES}
            assert httpx.post(f"{base}/v1/route", json=body, timeout=10).status_code == 401
            expected = default_router.decide(MESSAGES, RoutingOptions(quality_threshold=0.5, strategy="route"), "model")
            for _ in range(6):  # either worker: each loaded the same router
                got = httpx.post(f"{base}/v1/route", json=body, headers=auth, timeout=10).json()
                assert got["target"] == expected.target and got["threshold_source"] == "model:quality_threshold"
                assert got["score"] == pytest.approx(expected.score, abs=1e-4)
            assert stub.requests == []  # /v1/route calls no model

            answer = httpx.post(
                f"{base}/v1/chat/completions", json={**body, "model": "hybrid:small"}, headers=auth, timeout=10
            )
            assert answer.status_code == 200 and answer.headers["x-hybrid-route"] == "small"
            assert answer.json()["choices"][0]["message"]["content"] == "stub answer"
            assert [r["body"]["model"] for r in stub.requests] == ["small"]

            process.send_signal(signal.SIGHUP)  # rolling restart: new workers, same socket, the parent stays
            old, pids = pids, set()

            def restarted() -> bool:
                try:
                    pids.update(worker_pids(base, 2, attempts=40) - old)
                except httpx.HTTPError:
                    return False
                return len(pids) >= 2 and not any(alive(pid) for pid in old)

            assert wait_until(restarted, 240, 0.5), (old, pids, log.read_text())
            assert all(parent_of(pid) == process.pid for pid in pids)
            got = httpx.post(f"{base}/v1/route", json=body, headers=auth, timeout=10).json()
            assert got["score"] == pytest.approx(expected.score, abs=1e-4)
            pids |= old
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(30)
    assert code == 0, log.read_text()
    assert wait_until(lambda: not any(alive(pid) for pid in pids), 10), [p for p in pids if alive(p)]
    assert "Traceback" not in log.read_text(), log.read_text()


def run_serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SERVE, "--small", "http://127.0.0.1:9/v1", "--small-model", "m", "--large", "http://127.0.0.1:9/v1", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers", "0"], "argument --workers: must be a positive"),
        (["--workers", "two"], "argument --workers: expected a int"),
        (["--workers", "2", "--port", "99999"], "argument --port: must be in 0-65535"),
        (["--workers", "2", "--host", "999.1.1.1"], "cannot listen on 999.1.1.1:8000"),
        (["--workers", "2", "--api-key-file", "/nonexistent/key"], "secret file /nonexistent/key does not exist"),
        (["--workers", "2", "--refresh-s", "5"], "--refresh-s needs --router DIR"),
        (["--workers", "2", "--port", "0", "--router", "/nonexistent"], "not a router folder: /nonexistent"),
    ],
)
def test_bad_flags_with_workers_are_one_error_line(args, message):
    started = time.monotonic()
    done = run_serve(*args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line.lower()]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert time.monotonic() - started < 100
