"""Router heads and training recipes: save/load round trips, the default recipe, kNN and query features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hybrid_router import HybridRouter
from hybrid_router.core.features import FEATURE_NAMES, query_features, text_features
from hybrid_router.core.head import BlendHead, KnnHead, LinearHead, LogisticHead, load_head
from hybrid_router.train.data_io import RoutingData
from hybrid_router.train.recipes import (
    DEFAULT_RECIPE,
    FALLBACK,
    RECIPES,
    fit_knn,
    fit_linear,
    ranking_quality,
    run_recipe,
    select_head,
)
from hybrid_router.train.training import fit_logistic, train_router

DIM = 16
EASY = [
    "What is the capital of France?",
    "Say hello.",
    "What colour is the sky?",
    "Name a fruit.",
    "Who wrote Hamlet?",
    "What is 2 + 2?",
    "Translate 'cat' to French.",
    "Spell the word 'dog'.",
]
HARD = [
    "A train leaves at 3:15 pm at 84 km/h; a second one leaves 25 minutes later at 112 km/h, then stops for 7 "
    "minutes, and a third starts at 4:05 pm at 96 km/h. If each covers 342 km, how many minutes apart do they "
    "arrive, and what is the average speed of all three, in total, rounded to 2 decimals?",
    "Prove that for every integer n > 2 the polynomial x^n + 5x^(n-1) + 3 is irreducible over the rationals, "
    "then show that its Galois group is the full symmetric group when n is prime, and derive a bound.",
    "Maria buys 3 dozen eggs at $2.40 per dozen, sells two thirds of them at 35 cents each, gives 4 to each of "
    "her 3 neighbours, and uses the rest for cakes needing 3 eggs each; how much profit does she make, and "
    "how many cakes, if each cake sells for $7.25 after a 15% discount?",
]


def toy(n: int, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Unit embeddings whose label is the sign of one direction; texts are a mix of easy and hard queries."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, DIM)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    direction = np.eye(DIM, dtype=np.float32)[0]
    labels = (emb @ direction > 0).astype(np.float64)
    texts = [(EASY + HARD)[i % (len(EASY) + len(HARD))] for i in range(n)]
    return emb, texts, labels, direction


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float((pos[:, None] > neg[None, :]).mean())


def round_trip(head, tmp_path):
    router = HybridRouter(head, encoder="minilm")  # the encoder is only loaded on first use: never here
    router.save(tmp_path / "r")
    return HybridRouter.load(tmp_path / "r").head


def all_heads():
    emb, texts, labels, _ = toy(120)
    linear_both = fit_linear(emb, texts, labels)
    return {
        "logistic": fit_logistic(emb, texts, labels),
        "linear(emb)": fit_linear(emb, texts, labels, features=False),
        "linear(features)": fit_linear(emb, texts, labels, embedding=False),
        "linear(both)": linear_both,
        "knn": fit_knn(emb, texts, labels, k=7),
        "knn(temperature)": KnnHead(emb, labels, k=5, temperature=0.05, strength=0.5),
        "blend": BlendHead([linear_both, fit_knn(emb, texts, labels, k=9)], [0.7, 0.4], -0.1),
    }


@pytest.mark.parametrize("name", list(all_heads()))
def test_save_load_round_trip_gives_identical_predictions(name, tmp_path):
    head = all_heads()[name]
    emb, texts, _, _ = toy(40, seed=1)
    loaded = round_trip(head, tmp_path)
    assert type(loaded) is type(head)
    before, after = head.predict(emb, texts), loaded.predict(emb, texts)
    assert before.shape == (40,) and np.all((before >= 0) & (before <= 1))
    np.testing.assert_array_equal(before, after)


def test_linear_head_refuses_other_feature_version(tmp_path):
    head = fit_linear(*toy(60)[:3], embedding=False)
    directory = HybridRouter(head).save(tmp_path / "r")
    config = json.loads((directory / "router.json").read_text())
    config["head"]["features_version"] = -1
    with pytest.raises(ValueError, match="features version"):
        load_head(config["head"], {k: v for k, v in head.tensors().items()})


def test_default_recipe_learns_a_separable_toy_problem():
    emb, texts, labels, _ = toy(400)
    test_emb, test_texts, test_labels, _ = toy(300, seed=7)
    head = RECIPES[DEFAULT_RECIPE](emb, texts, labels, 0)
    scores = head.predict(test_emb, test_texts)
    assert auc(scores, test_labels) > 0.97
    assert scores[test_labels == 1].mean() > 0.7 > 0.3 > scores[test_labels == 0].mean()


def test_auto_recipe_finds_a_signal_that_only_the_features_carry():
    rng = np.random.default_rng(3)
    texts = [rng.choice(EASY) if rng.random() < 0.5 else rng.choice(HARD) for _ in range(300)]
    labels = np.array([1.0 if t in EASY else 0.0 for t in texts])
    emb = rng.normal(size=(300, DIM)).astype(np.float32)  # pure noise
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    selection = select_head(emb, texts, labels)
    assert "features" in selection.name and selection.scores
    head = selection.fit(emb, texts, labels)
    easy_scores = head.predict(emb[: len(EASY)], EASY)
    hard_scores = head.predict(emb[: len(HARD)], HARD)
    assert easy_scores.min() > 0.8 and hard_scores.max() < 0.2


def test_small_training_sets_use_the_fixed_fallback():
    emb, texts, labels, _ = toy(50)
    selection = select_head(emb, texts, labels)
    assert selection.parts == [FALLBACK] and selection.scores == {}
    fitted = run_recipe("auto", emb, texts, labels)
    assert isinstance(fitted.head, LinearHead) and fitted.details["chosen"] == FALLBACK.name


def test_blend_is_only_chosen_with_positive_weights_and_a_clear_gain():
    emb, texts, labels, _ = toy(400)
    selection = select_head(emb, texts, labels, blend_margin=10.0)  # an impossible margin: never blend
    assert selection.weights is None and any(k.startswith("blend(") for k in selection.scores)
    # Labels that only neighbourhoods explain (a checkerboard over two directions): the kNN blend must win.
    xor = ((emb[:, 0] > 0) ^ (emb[:, 1] > 0)).astype(np.float64)
    selection = select_head(emb, texts, xor)
    assert selection.weights is not None and np.all(selection.weights > 0)
    assert isinstance(selection.fit(emb, texts, xor), BlendHead)


def test_knn_head_smooths_neighbour_labels_towards_the_prior():
    keys = np.eye(4, dtype=np.float32)
    values = np.array([1.0, 0.0, 1.0, 0.0])
    exact = KnnHead(keys, values, k=1, strength=0.0)
    np.testing.assert_allclose(exact.predict(keys, [""] * 4), values)
    smoothed = KnnHead(keys, values, k=1, strength=1.0, prior=0.5)
    np.testing.assert_allclose(smoothed.predict(keys, [""] * 4), [0.75, 0.25, 0.75, 0.25])
    uniform = KnnHead(keys, values, k=4, strength=0.0)
    np.testing.assert_allclose(uniform.predict(keys[:1], [""]), [0.5])
    sharp = KnnHead(keys, values, k=4, temperature=0.01, strength=0.0)  # the nearest neighbour dominates
    assert sharp.predict(keys[:1], [""])[0] > 0.99
    loo = KnnHead(keys, values, k=1, strength=0.0).predict_similarities(keys @ keys.T, exclude_self=True)
    assert np.all(np.isin(loo, values)) and not np.allclose(loo, values)


def test_fit_knn_caps_the_stored_queries_and_keeps_the_full_prior():
    emb, texts, labels, _ = toy(200)
    head = fit_knn(emb, texts, labels, k=10, max_items=50)
    assert head.keys.shape == (50, DIM) and head.keys.dtype == np.float16
    assert head.prior == pytest.approx(labels.mean())


def test_query_features_follow_the_text():
    feats = query_features(
        ["What is the capital of France?", HARD[0], "Which is a prime?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:"]
    )
    assert feats.shape == (3, len(FEATURE_NAMES)) and feats.dtype == np.float32
    col = {name: feats[:, i] for i, name in enumerate(FEATURE_NAMES)}
    assert col["log_words"][1] > col["log_words"][0]
    assert col["log_numbers"][1] > col["log_numbers"][0] == 0
    assert col["log_clauses"][1] > col["log_clauses"][0]
    assert col["how_many"].tolist() == [0, 1, 0] and col["starts_with_wh"].tolist() == [1, 0, 1]
    assert col["multiple_choice"].tolist() == [0, 0, 1] and col["ends_with_answer"].tolist() == [0, 0, 1]
    assert query_features([]).shape == (0, len(FEATURE_NAMES))
    assert len(text_features("")) == len(FEATURE_NAMES) and np.all(np.isfinite(query_features([""])))


def test_ranking_quality_prefers_the_right_order():
    labels = np.array([1.0, 1.0, 0.0, 0.0])
    good, bad = np.array([0.9, 0.8, 0.1, 0.2]), np.array([0.1, 0.2, 0.9, 0.8])
    assert ranking_quality(good, labels) > ranking_quality(bad, labels)
    assert ranking_quality(np.zeros(3), np.ones(3)) == 0.5


def test_logistic_fitter_still_returns_a_logistic_head():
    emb, texts, labels, direction = toy(200)
    head = fit_logistic(emb, texts, labels)
    assert isinstance(head, LogisticHead) and float(head.weight @ direction) > 0


@pytest.mark.real_model
def test_train_router_with_the_default_recipe_on_real_embeddings(tmp_path):
    queries = EASY * 3 + HARD * 8
    small = [1.0 if q in EASY else 0.0 for q in queries]
    data = RoutingData(
        query_ids=[f"q{i}" for i in range(len(queries))],
        queries=[f"{q} (#{i})" for i, q in enumerate(queries)],
        small_scores=[np.array([s]) for s in small],
        large_scores=[np.array([1.0]) for _ in queries],
    )
    result = train_router(data, recipe=DEFAULT_RECIPE, val_fraction=0.25)
    router = result.router
    assert router.info["recipe"] == "auto" and router.info["selection"]["chosen"] == FALLBACK.name
    assert router.info["n_train"] == len(data) and router.calibration is not None
    # the default threshold is the calibrated one for a 1% quality drop, not a fixed 0.5
    assert router.default_threshold == router.calibration.threshold_for_max_quality_drop(0.01)
    assert router.info["default_threshold_rule"] == "certified: max_quality_drop=0.01"
    easy, hard = router.score("What is the capital of France?"), router.score(HARD[1])
    assert easy > 0.5 > hard
    reloaded = HybridRouter.load(router.save(tmp_path / "r"))
    assert reloaded.score(HARD[1]) == pytest.approx(hard, abs=1e-6)


@pytest.mark.real_model
def test_shipped_default_router_loads_offline_and_ranks_a_hard_query_below_a_trivial_one(default_router):
    from importlib import resources
    from pathlib import Path

    folder = Path(str(resources.files("hybrid_router.core").joinpath("default_router")))
    assert sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) < 10e6
    info = default_router.info
    assert info["recipe"] == "auto" and info["refit_on_all"] and default_router.calibration is not None
    assert {"gsm8k", "mmlu", "mtbench"} <= set(info["validation_apgr"])
    hard = (
        "Prove that for every integer n >= 2 the number of ways to tile a 2 x n board with dominoes and L-shaped "
        "trominoes satisfies a linear recurrence of order 3, find the recurrence and its initial values, then "
        "derive a closed form and show that the ratio of consecutive terms converges; justify every step."
    )
    assert default_router.score(hard) < default_router.score("What is the capital of France?") - 0.05


@pytest.mark.real_model
def test_shipped_default_threshold_splits_real_traffic(default_router):
    """Scores are probabilities that sit mostly above 0.5 here; the calibrated default still splits the calls."""
    from hybrid_router import load_routing_data
    from hybrid_router.train.data import SHIPPED_DATASETS, shipped_path

    pooled = [q for name in SHIPPED_DATASETS for q in load_routing_data(shipped_path(name)).queries]
    queries = [pooled[i] for i in np.random.default_rng(0).choice(len(pooled), 150, replace=False)]
    scores = default_router.score_batch(queries)
    threshold = default_router.default_threshold
    assert threshold == default_router.calibration.threshold_for_max_quality_drop(0.01)
    calibrated_share = default_router.calibration.large_share[default_router.calibration.thresholds == threshold][0]
    assert abs(float(np.mean(scores < threshold)) - calibrated_share) < 0.12  # 0.79 on the validation split
    assert float(np.mean(scores < 0.5)) < 0.05  # a fixed 0.5 would (almost) never call the large model
    decisions = [default_router.route(q) for q in queries[:5]]
    assert [d.threshold for d in decisions] == [threshold] * 5
    assert [d.target for d in decisions] == ["large" if s < threshold else "small" for s in scores[:5]]
