"""Encoder depth selection: the auto recipe picks how many encoder layers the router reads, on training data only."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_router import HybridRouter, load_routing_data
from hybrid_router.core.encoder import Encoder
from hybrid_router.train.data import shipped_path
from hybrid_router.train.data_io import RoutingData
from hybrid_router.train.depth import DEFAULT_DEPTHS, select_depth
from hybrid_router.train.training import train_router

N = 300


class DepthProbe(Encoder):
    """A stand-in for MiniLM (6 layers) whose depth-3 vectors are noise and whose deeper vectors carry the label
    direction: the selection rule, not the transformer, is under test here."""

    def __init__(self, labels: np.ndarray, layers: int | None = None):
        self.name, self.layers, self.labels = "minilm", layers, labels
        self.encoded: list[int | None] = []

    def with_layers(self, layers):
        return DepthProbe(self.labels, layers)

    def encode(self, texts, *, batch_size=64, progress=False):
        self.encoded.append(self.layers)
        rng = np.random.default_rng(len(texts) + (self.layers or 0))
        vectors = rng.normal(size=(len(texts), 8))
        if self.layers != 3:
            vectors[:, 0] += 3.0 * (self.labels[: len(texts)] - 0.5)
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def probe_data() -> tuple[list[str], np.ndarray]:
    labels = (np.random.default_rng(0).random(N) < 0.6).astype(np.float64)
    return [f"query number {i}" for i in range(N)], labels


def test_the_shallowest_depth_within_tolerance_of_the_best_is_chosen():
    texts, labels = probe_data()
    choice = select_depth(DepthProbe(labels), texts, labels)
    assert set(choice.scores) == {"3", "4", "all"}
    assert choice.scores["3"] < 0.6 < choice.scores["4"]  # noise at depth 3 (0.5 is random), the label from depth 4
    assert choice.encoder.layers == 4 and choice.details()["chosen"] == "4"
    assert choice.embeddings.shape == (N, 8)
    # with a tolerance wider than the gap, the cheapest depth wins
    assert select_depth(DepthProbe(labels), texts, labels, tolerance=1.0).encoder.layers == 3


def test_no_depth_choice_without_enough_data_or_with_constant_labels():
    texts, labels = probe_data()
    assert select_depth(DepthProbe(labels), texts[:150], labels[:150]) is None
    assert select_depth(DepthProbe(labels), texts, np.ones(N)) is None


def test_depths_the_encoder_does_not_have_are_skipped():
    texts, labels = probe_data()
    choice = select_depth(DepthProbe(labels), texts, labels, depths=(4, 8, 12, None))
    assert set(choice.scores) == {"4", "all"}


@pytest.mark.real_model
def test_train_router_chooses_a_depth_and_the_artifact_keeps_it(tmp_path):
    data = load_routing_data(shipped_path("routellm_gsm8k"))
    n = 252
    subset = RoutingData(
        query_ids=data.query_ids[:n],
        queries=data.queries[:n],
        small_scores=data.small_scores[:n],
        large_scores=data.large_scores[:n],
    )
    router = train_router(subset).router
    depth = router.info["depth_selection"]
    assert set(depth["cv_ranking_quality"]) == {str(d) if d else "all" for d in DEFAULT_DEPTHS}
    assert depth["chosen"] == ("all" if router.encoder_layers is None else str(router.encoder_layers))
    assert router.encoder.layers == router.encoder_layers
    loaded = HybridRouter.load(router.save(tmp_path / "r"))
    assert loaded.encoder_layers == router.encoder_layers
    queries = data.queries[n : n + 4]
    np.testing.assert_allclose(loaded.score_batch(queries), router.score_batch(queries), atol=1e-6)


def test_an_encoder_with_a_fixed_depth_is_used_as_given():
    texts, labels = probe_data()
    data = RoutingData(
        query_ids=texts,
        queries=texts,
        small_scores=[np.array([y]) for y in labels],
        large_scores=[np.array([1.0]) for _ in labels],
    )
    probe = DepthProbe(labels, layers=2)
    router = train_router(data, encoder=probe).router
    assert router.encoder_layers == 2 and "depth_selection" not in router.info
    assert set(probe.encoded) == {2}
    searched = DepthProbe(labels)
    assert "depth_selection" in train_router(data, encoder=searched).router.info
