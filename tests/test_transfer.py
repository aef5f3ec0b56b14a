"""The ``transfer`` recipe (source intercepts, leave-one-source-out selection) and the shipped router's ordering of
the demo's trivial and hard queries."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_router import HybridRouter
from hybrid_router.core.head import BlendHead, LinearHead
from hybrid_router.serve.demo import DEMO_QUERIES
from hybrid_router.train.data_io import RoutingData
from hybrid_router.train.recipes import RECIPES, fit_linear, run_recipe
from hybrid_router.train.training import train_router
from hybrid_router.train.transfer import OTHER_SOURCE, fit_within_sources, query_sources, select_transfer_head

DIM = 8


def two_sources(n: int = 600, seed: int = 0):
    """Source ``a`` (base rate ~0.9) and ``b`` (~0.3); embedding dimension 0 says which source (a marker that
    carries no information within a source), dimension 1 is the real within-source signal."""
    rng = np.random.default_rng(seed)
    sources = np.where(np.arange(n) % 2 == 0, "a", "b").astype(object)
    emb = rng.normal(size=(n, DIM)).astype(np.float32) * 0.3
    emb[:, 0] = np.where(sources == "a", 1.0, -1.0)
    base = np.where(sources == "a", 2.2, -0.85)
    labels = (rng.random(n) < 1 / (1 + np.exp(-(base + 4 * emb[:, 1])))).astype(np.float64)
    texts = [f"query {i}" for i in range(n)]
    return emb, texts, labels, sources


def test_query_sources_from_id_prefixes():
    ids = [f"gsm8k/{i}" for i in range(30)] + [f"mmlu/{i}" for i in range(40)] + ["mtbench/1/t1"] * 5
    sources = query_sources(ids)
    assert sources is not None and list(sources[:30]) == ["gsm8k"] * 30 and set(sources[-5:]) == {OTHER_SOURCE}
    assert query_sources([f"q{i}" for i in range(50)]) is None  # no prefix: one source
    assert query_sources([f"gsm8k/{i}" for i in range(50)]) is None  # one prefix
    assert query_sources([f"user{i}/1" for i in range(200)]) is None  # ids, not sources
    assert query_sources([f"a/{i}" for i in range(30)] + ["b/1"]) is None  # the tiny one pooled: one source left


def test_source_intercepts_keep_the_head_off_a_source_marker():
    emb, texts, labels, sources = two_sources()
    plain = fit_linear(emb, texts, labels, features=False, emb_decay=1e-3)
    within = fit_within_sources(emb, texts, labels, sources, features=False, emb_decay=1e-3)
    assert isinstance(within, LinearHead) and within.feature_weight is None
    assert plain.emb_weight[0] > 1.0  # pooled: "looks like source a" alone raises the score
    assert abs(within.emb_weight[0]) < 0.2 * plain.emb_weight[0]
    assert within.emb_weight[1] > 2.0  # the within-source signal is kept
    # the bias is the average source intercept: mean score near the pooled base rate
    assert abs(within.predict(emb, texts).mean() - labels.mean()) < 0.1


def test_balance_weights_rows_by_source_size():
    emb, texts, labels, sources = two_sources(400)
    keep = np.r_[np.flatnonzero(sources == "a"), np.flatnonzero(sources == "b")[:40]]
    args = (emb[keep], [texts[i] for i in keep], labels[keep], sources[keep])
    even = fit_within_sources(*args, features=False, balance=0.0)
    balanced = fit_within_sources(*args, features=False, balance=1.0)
    assert not np.allclose(even.emb_weight, balanced.emb_weight)


def test_selection_is_leave_one_source_out_and_refits_with_sources():
    emb, texts, labels, sources = two_sources(400)
    selection = select_transfer_head(emb, texts, labels, sources)
    summary = selection.to_dict()
    assert summary["sources"] == {"a": 200, "b": 200}
    assert summary["cv"] == "leave-one-source-out"
    assert set(summary["cv_by_source"][summary["chosen"]]) == {"a", "b"}
    assert summary["chosen"] in summary["cv_ranking_quality"]
    fitted = run_recipe("transfer", emb, texts, labels, 0, sources)
    assert fitted.details["chosen"] == summary["chosen"]
    again = fitted.refit(emb, texts, labels, 0)
    np.testing.assert_allclose(again.predict(emb, texts), fitted.head.predict(emb, texts), atol=1e-5)


def test_a_small_source_is_only_held_out_against_the_large_one():
    emb, texts, labels, sources = two_sources(600)
    keep = np.r_[np.flatnonzero(sources == "a"), np.flatnonzero(sources == "b")[:60]]
    selection = select_transfer_head(emb[keep], [texts[i] for i in keep], labels[keep], sources[keep])
    assert selection.scheme == "leave-one-source-out" and selection.counts == {"a": 300, "b": 60}
    assert set(selection.per_source[selection.chosen.name]) == {"b"}  # training on 60 queries is no fold


def test_transfer_without_sources_is_the_auto_search():
    emb, texts, labels, _ = two_sources(300)
    fitted = run_recipe("transfer", emb, texts, labels, 0, None)
    assert fitted.details["transfer"].startswith("one source")
    assert "transfer" in RECIPES and RECIPES["transfer"](emb, texts, labels, 0).predict(emb, texts).shape == (300,)


@pytest.mark.real_model
def test_train_router_transfer_reads_sources_from_query_ids(tmp_path):
    rng = np.random.default_rng(0)
    easy = ["What is 2 + 2?", "Name a colour.", "Say hello.", "What is the capital of Italy?"]
    hard = ["Prove that sqrt(2) is irrational.", "Derive the quadratic formula step by step."]
    queries, ids, small = [], [], []
    for i in range(300):
        source = "x" if i % 2 else "y"
        text = rng.choice(easy if rng.random() < 0.5 else hard)
        queries.append(f"{text} (#{i})")
        ids.append(f"{source}/{i}")
        small.append(float(text in easy and (source == "x" or rng.random() < 0.6)))
    data = RoutingData(
        query_ids=ids,
        queries=queries,
        small_scores=[np.array([s]) for s in small],
        large_scores=[np.array([1.0]) for _ in queries],
    )
    router = train_router(data, recipe="transfer", val_fraction=0.2, verifier=False).router
    assert router.info["recipe"] == "transfer"
    assert set(router.info["selection"]["sources"]) == {"x", "y"}  # 240 training queries, from the ids
    loaded = HybridRouter.load(router.save(tmp_path / "r"))
    assert isinstance(loaded.head, (LinearHead, BlendHead))  # a blend when the centred kNN part helps
    assert loaded.score("What is 2 + 2?") > loaded.score("Prove that sqrt(2) is irrational.")


@pytest.mark.real_model
def test_shipped_router_scores_the_trivial_demo_queries_above_the_hard_ones_on_average(default_router):
    scores = default_router.score_batch(list(DEMO_QUERIES))
    trivial, hard = scores[:5], scores[-3:]  # a greeting, 2 + 2, a capital, ... / a proof, O(n^2) code, a derivation
    assert trivial.mean() > hard.mean(), (trivial, hard)


@pytest.mark.real_model
@pytest.mark.xfail(
    strict=True,
    reason="issue #14: the shipped router scores 'What is 2 + 2?' (and 'Hi!') below the proof; on the shipped sets "
    "(Mixtral vs GPT-4) only a hand-weighted router orders the demo, and it transfers worse on every set "
    "(benchmarks/transfer.py, demo-weighted row)",
)
def test_shipped_router_scores_each_trivial_demo_query_above_each_hard_one(default_router):
    scores = default_router.score_batch(list(DEMO_QUERIES))
    assert scores[:5].min() > scores[-3:].max()
