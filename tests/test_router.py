"""The router: save/load round trip, corrupt files, routing decisions, calibration, the shipped default."""

import json
import shutil

import numpy as np
import pytest

from hybrid_router import Calibration, HybridRouter, RouterFileError, routing
from hybrid_router.core.head import LogisticHead


@pytest.fixture(scope="module")
def saved_router(tmp_path_factory, default_router):
    """A copy of the shipped router in a temp folder (same encoder object, so no reload)."""
    folder = tmp_path_factory.mktemp("router")
    default_router.save(folder)
    return folder


QUERIES = [
    "What is the capital of France?",
    "Prove that there are infinitely many primes p such that p + 2 is also prime, or explain why it is open.",
    "Janet has 3 apples and buys 5 more. How many apples does she have?",
]


def test_save_load_round_trip_gives_identical_scores(saved_router, default_router):
    loaded = HybridRouter.load(saved_router, encoder=default_router.encoder)
    assert np.array_equal(loaded.score_batch(QUERIES), default_router.score_batch(QUERIES))
    assert loaded.calibration.to_dict() == default_router.calibration.to_dict()


def test_score_batch_matches_single_scores(default_router):
    batch = default_router.score_batch(QUERIES)
    singles = [default_router.score(q) for q in QUERIES]
    assert np.allclose(batch, singles, atol=1e-5)
    assert ((batch >= 0) & (batch <= 1)).all()


def test_default_router_ranks_a_hard_query_below_an_easy_one(default_router):
    easy, hard = default_router.score_batch(
        [
            "What is the capital of France?",
            "A train leaves at 3:15 pm at 48 mph; a second leaves the same station at 4:05 pm at 62 mph on a parallel "
            "track. A third train, 35% faster than the first, leaves at 4:40 pm. "
            "At what exact time, to the second, does "
            "each later train overtake the first, and how far from the station is each overtaking point in kilometres?",
        ]
    )
    assert hard < easy


def test_threshold_extremes_and_forced_routes(default_router):
    q = QUERIES[0]
    assert default_router.route(q, 0.0).target == "small"
    assert default_router.route(q, 1.0).target == "large"
    forced = default_router.route(q, force="large")
    assert forced.target == "large" and forced.score is None and forced.threshold_source == "argument:route"


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan")])
def test_invalid_threshold_is_an_error(default_router, bad):
    with pytest.raises(ValueError, match="quality_threshold"):
        default_router.route(QUERIES[0], bad)


def test_empty_queries_are_errors(default_router):
    for empty in ["", "   ", [], [{"role": "user", "content": ""}]]:
        with pytest.raises(ValueError, match="empty"):
            default_router.route(empty)


def test_context_manager_and_calibrated_targets(default_router):
    with routing(large_share=1.0):
        decision = default_router.route(QUERIES[0])
    assert decision.target == "large" and decision.threshold_source == "context:large_share"
    assert default_router.route(QUERIES[0], max_quality_drop=1.0).threshold_source == "argument:max_quality_drop"


def test_calibration_hits_the_requested_share():
    rng = np.random.default_rng(0)
    scores = rng.random(1000)
    small_q = (rng.random(1000) < scores).astype(float)
    large_q = np.ones(1000)
    cal = Calibration.fit(scores, small_q, large_q)
    for share in (0.1, 0.3, 0.5, 0.9):
        threshold = cal.threshold_for_large_share(share)
        assert abs((scores < threshold).mean() - share) <= 0.01
    # the max-drop rule picks a threshold whose measured drop is within the bound, and fewest large calls
    threshold = cal.threshold_for_max_quality_drop(0.05)
    routed = np.where(scores < threshold, large_q, small_q).mean()
    assert (large_q.mean() - routed) / large_q.mean() <= 0.05 + 1e-9
    looser = cal.threshold_for_max_quality_drop(0.2)
    assert looser <= threshold


def test_missing_and_corrupt_router_files(tmp_path, saved_router):
    with pytest.raises(RouterFileError, match="missing"):
        HybridRouter.load(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(saved_router, broken)
    (broken / "router.json").write_text("{not json")
    with pytest.raises(RouterFileError, match="corrupt router config"):
        HybridRouter.load(broken)
    shutil.copy(saved_router / "router.json", broken / "router.json")
    (broken / "head.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(RouterFileError, match="corrupt router weights"):
        HybridRouter.load(broken)
    config = json.loads((saved_router / "router.json").read_text())
    config["head"]["type"] = "nonsense"
    shutil.copy(saved_router / "head.safetensors", broken / "head.safetensors")
    (broken / "router.json").write_text(json.dumps(config))
    with pytest.raises(RouterFileError, match="unknown router head"):
        HybridRouter.load(broken)


def test_router_without_calibration_rejects_share_targets(default_router):
    bare = HybridRouter(LogisticHead(np.zeros(default_router.encoder.dim), 0.0), encoder=default_router.encoder)
    assert bare.score("hi") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no calibration"):
        bare.route("hi", large_share=0.3)


def test_hub_encoder_name_fails_fast_offline():
    from hybrid_router.core.encoder import Encoder

    with pytest.raises(RuntimeError, match="cannot load encoder"):
        Encoder("some-org/definitely-not-a-local-model")
