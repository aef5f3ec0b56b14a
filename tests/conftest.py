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


@pytest.fixture(scope="session")
def cascade_router(tmp_path_factory):
    """A router with an answer verifier and cascade table: trained once per session on 300 shipped GSM8K
    queries with the small model's worked answers (3 encoder layers), saved and loaded back."""
    from hybrid_router import HybridRouter, load_routing_data, train_router
    from hybrid_router.core.encoder import Encoder
    from hybrid_router.train.data import shipped_path

    data = load_routing_data(shipped_path("routellm_gsm8k_answers")).subset(list(range(300)))
    folder = tmp_path_factory.mktemp("cascade_router")
    train_router(data, encoder=Encoder(layers=3), depths=None, seed=0).router.save(folder)
    return HybridRouter.load(folder)
