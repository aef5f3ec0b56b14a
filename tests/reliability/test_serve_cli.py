"""``hybrid-llm serve`` as a process: bad flags are one clear line, and the real server survives disconnects.

Issue 12, items 1 (the process stops on SIGTERM after clients disconnected mid-stream), 8 (keys from environment
variables and files) and 10 (``--port 99999``: an error line, not a traceback; ``--port 0``: the bound port).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from .serve_stubs import StubUpstream, connections_to, disconnect_after_first_chunk, wait_until

SERVE = [sys.executable, "-m", "hybrid_router.cli", "serve"]


def run_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SERVE, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--port", "99999"], "argument --port: must be in 0-65535"),
        (["--port", "http"], "argument --port: expected an integer"),
        (["--timeout", "0"], "argument --timeout: must be a positive"),
        (["--max-request-bytes", "-5"], "argument --max-request-bytes: must be a positive"),
        (["--api-key-file", "/nonexistent/key"], "secret file /nonexistent/key does not exist"),
        (["--host", "999.1.1.1"], "cannot listen on 999.1.1.1:8000"),
    ],
)
def test_bad_flags_are_one_error_line_without_traceback(args, message):
    done = run_serve(
        "--small", "http://127.0.0.1:9/v1", "--small-model", "m", "--large", "http://127.0.0.1:9/v1", *args
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], done.stderr


def test_a_port_in_use_is_one_error_line(busy_port):
    done = run_serve("--small", "http://127.0.0.1:9/v1", "--small-model", "m", "--port", str(busy_port))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"cannot listen on 127.0.0.1:{busy_port}: Address already in use" in done.stderr


def test_help_says_where_keys_come_from():
    done = run_serve("--help")
    text = " ".join(done.stdout.split())
    for needle in ("HYBRID_LLM_API_KEY", "HYBRID_LLM_LARGE_API_KEY", "--large-api-key-file", "visible in ps"):
        assert needle in text


def test_the_real_server_process_survives_disconnects_and_stops_on_sigterm(tmp_path: Path):
    key_file = tmp_path / "large.key"
    key_file.write_text("sk-large-from-file-0123456789\n")
    log = tmp_path / "serve.log"
    with StubUpstream() as stub, open(log, "w") as log_fh:
        command = [
            *SERVE,
            "--small", stub.url, "--small-model", "small",
            "--large", stub.url, "--large-model", "large:ok", "--large-api-key-file", str(key_file),
            "--port", "0", "--max-tokens", "5", "--timeout", "3",
        ]  # fmt: skip
        env = {**os.environ, "HYBRID_LLM_API_KEY": "router-key-42", "HYBRID_LLM_SMALL_API_KEY": "sk-small-env-12345"}
        process = subprocess.Popen(command, stdout=log_fh, stderr=subprocess.STDOUT, env=env)
        try:
            assert wait_until(lambda: "serving on" in log.read_text() or process.poll() is not None, 120)
            match = re.search(r"serving on (http://127\.0\.0\.1:(\d+))/v1", log.read_text())
            assert match and int(match[2]) > 0, log.read_text()
            base, auth = match[1], {"authorization": "Bearer router-key-42"}
            body = {"model": "hybrid:small", "messages": [{"role": "user", "content": "ok"}]}
            assert httpx.post(f"{base}/v1/chat/completions", json=body, timeout=10).status_code == 401
            answer = httpx.post(f"{base}/v1/chat/completions", json=body, headers=auth, timeout=10)
            assert answer.status_code == 200 and answer.headers["x-hybrid-route"] == "small"

            pause = {**body, "stream": True, "messages": [{"role": "user", "content": "pause"}]}
            for _ in range(6):
                assert b"data:" in disconnect_after_first_chunk(base, pause, headers=auth)
            assert wait_until(lambda: stub.active == 0 and connections_to(stub.port) == 0, 5), stub.active
            again = httpx.post(f"{base}/v1/chat/completions", json={**body, "stream": True}, headers=auth, timeout=5)
            assert again.status_code == 200 and again.text.rstrip().endswith("data: [DONE]")
            large = httpx.post(
                f"{base}/v1/chat/completions", json={**body, "model": "hybrid:large"}, headers=auth, timeout=5
            )
            assert large.status_code == 200 and large.headers["x-hybrid-route"] == "large"
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(15)
    assert code == 0 and "Traceback" not in log.read_text(), log.read_text()
    keys = {r["body"]["model"]: r["authorization"] for r in stub.requests}
    assert keys == {"small": "Bearer sk-small-env-12345", "large:ok": "Bearer sk-large-from-file-0123456789"}
    assert {r["body"].get("max_tokens") for r in stub.requests} == {5}
