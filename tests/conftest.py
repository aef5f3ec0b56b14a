"""Shared test set-up: offline hub, one torch thread, shared routers and models.

Model and server fixtures (the shipped small model, a real OpenAI-compatible server on 127.0.0.1) live in
``tests/model_fixtures.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

pytest_plugins = ["model_fixtures"]


@pytest.fixture(scope="session")
def default_router():
    """The router shipped with the package (loaded once per test session)."""
    from hybrid_router import HybridRouter

    return HybridRouter.shared_default()
