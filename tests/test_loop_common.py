"""Helpers of the learning-loop tests: shipped GSM8K rows, CLI subprocess runs."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from hybrid_router.train.data import shipped_path
from hybrid_router.train.data_io import load_routing_data


def gsm8k(start: int, stop: int):
    """Rows ``start:stop`` of the shipped GSM8K set with both answers (the cascade_router fixture uses 0:300)."""
    return load_routing_data(shipped_path("routellm_gsm8k_answers")).subset(list(range(start, stop)))


def permuted(data, seed: int = 0):
    """The same queries with the (small, large) score pairs shuffled across them: labels that mean nothing."""
    order = np.random.default_rng(seed).permutation(len(data))
    out = data.subset(list(range(len(data))))
    out.small_scores = [data.small_scores[i] for i in order]
    out.large_scores = [data.large_scores[i] for i in order]
    return out


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``hybrid-llm ARGS`` in a fresh interpreter (offline, one thread)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "hybrid_router.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def one_error_line(proc: subprocess.CompletedProcess, command: str) -> str:
    """The single stderr line of a failed CLI run (exit status 2, no traceback)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"hybrid-llm {command}: error: "), lines[0]
    assert "Traceback" not in proc.stderr
    return lines[0]
