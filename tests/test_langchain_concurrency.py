"""1,000 concurrent ``ainvoke`` calls, each with its own threshold (kwarg, metadata or context): each is routed by it.

The router is the shipped one (its trained head and MiniLM embeddings); its encoder reads the embeddings from an
on-disk cache (``hybrid_router.train.embedding_cache.CachedEncoder``) filled once before the calls, so the test measures
routing under concurrency rather than 1,000 transformer passes on a small CPU.
"""

from __future__ import annotations

import asyncio
import random
from importlib import resources
from pathlib import Path

import pytest
from lc_fakes import NO_NETWORK, ScriptedChatModel

from hybrid_router import HybridRouter, routing
from hybrid_router.train.embedding_cache import CachedEncoder
from langchain_hybrid import HybridChatModel

pytestmark = NO_NETWORK

N_CALLS = 1000
TOPICS = [
    "prime numbers",
    "photosynthesis",
    "the French revolution",
    "binary search",
    "compound interest",
    "black holes",
    "the water cycle",
    "recursion",
    "supply and demand",
    "vaccines",
]
FORMS = ["What is {}?", "Explain {} to a child.", "Write a detailed essay about {}.", "Give one fact about {}."]
QUERIES = [form.format(topic) for topic in TOPICS for form in FORMS]


@pytest.fixture(scope="module")
def cached_router(tmp_path_factory) -> HybridRouter:
    folder = Path(str(resources.files("hybrid_router.core").joinpath("default_router")))
    layers = HybridRouter.default().encoder_layers
    encoder = CachedEncoder("minilm", cache_dir=tmp_path_factory.mktemp("embeddings"), layers=layers)
    router = HybridRouter.load(folder, encoder=encoder)
    router.score_batch(QUERIES)  # fills the cache
    return router


async def one_call(model: HybridChatModel, query: str, threshold: float, layer: str):
    if layer == "kwarg":
        return await model.ainvoke(query, quality_threshold=threshold)
    if layer == "metadata":
        return await model.ainvoke(query, config={"metadata": {"quality_threshold": threshold}})
    with routing(quality_threshold=threshold):
        return await model.ainvoke(query)


def test_thousand_concurrent_calls_each_routed_by_its_own_threshold(cached_router):
    scores = dict(zip(QUERIES, cached_router.score_batch(QUERIES)))
    model = HybridChatModel(
        small=ScriptedChatModel(model_name="fake-small", delay=0.002),
        large=ScriptedChatModel(model_name="fake-large", delay=0.002),
        router=cached_router,
    )
    rng = random.Random(7)
    low, high = min(scores.values()), max(scores.values())  # thresholds across the scores: both routes are taken
    plan = [
        (rng.choice(QUERIES), round(rng.uniform(low, high), 3), ("kwarg", "metadata", "context")[i % 3])
        for i in range(N_CALLS)
    ]

    async def run_all():
        return await asyncio.gather(*(one_call(model, q, t, layer) for q, t, layer in plan))

    results = asyncio.run(run_all())
    routes = {"small": 0, "large": 0}
    for (query, threshold, layer), message in zip(plan, results):
        routed = message.response_metadata["hybrid_router"]
        assert routed["threshold"] == threshold
        assert routed["threshold_source"] == f"{layer}:quality_threshold"
        assert routed["score"] == pytest.approx(scores[query], abs=1e-5)
        expected = "small" if routed["score"] >= threshold else "large"
        assert routed["route"] == routed["answered_by"] == expected
        assert message.response_metadata["model_name"] == f"fake-{expected}"
        assert f"fake-{expected}" in message.text
        routes[expected] += 1
    assert min(routes.values()) > N_CALLS // 10, routes
    assert len(model.small.calls) == routes["small"] and len(model.large.calls) == routes["large"]
