"""``learn``: real logs, real training; a worse router is never promoted, bad logs are one clear error."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time

import numpy as np
import pytest
from test_loop_common import cli, gsm8k, one_error_line, permuted

from hybrid_router.core.answered import Answered
from hybrid_router.core.decision import RouteDecision
from hybrid_router.core.encoder import Encoder
from hybrid_router.core.router import HybridRouter
from hybrid_router.loop.learn import (
    MIN_HOLDOUT_QUERIES,
    LearnError,
    learn,
    load_base,
    ordered_pairs,
    queries_needed,
    record_path,
    split_by_query,
)
from hybrid_router.loop.promotion import COST_TOLERANCE, cost_check, promotion_test
from hybrid_router.loop.replay import replay_data
from hybrid_router.traffic.routing_log import LogFileError, RoutingLog
from hybrid_router.train.evaluation import apgr_resampled, evaluate_scores
from hybrid_router.train.training import train_router

FAST = dict(encoder=Encoder(layers=3), depths=None)


def inverted(data):
    """The same queries with the deterministic label flipped: a router trained on it routes the wrong way round."""
    out = data.subset(list(range(len(data))))
    small_ok = data.mean_small() >= data.mean_large()
    out.small_scores = [np.array([0.0 if ok else 1.0]) for ok in small_ok]
    out.large_scores = [np.array([1.0 if ok else 0.0]) for ok in small_ok]
    return out


def records(out) -> list[dict]:
    return [json.loads(line) for line in record_path(out).read_text().splitlines()]


@pytest.fixture(scope="module")
def true_log(tmp_path_factory, cascade_router):
    """300 GSM8K queries (not the fixture router's) replayed with shadow answers for every call."""
    path = tmp_path_factory.mktemp("learn") / "true.db"
    replay_data(gsm8k(800, 1100), path, cascade_router, shadow_rate=1.0, seed=0)
    return path


@pytest.fixture(scope="module")
def wrong_way_router_dir(tmp_path_factory):
    """A cascade router (verifier and cascade table) trained on 200 GSM8K queries with flipped labels: it sends
    the queries the small model gets right to the large one. Clearly worse than one that learned the workload."""
    folder = tmp_path_factory.mktemp("wrong_way_router")
    router = train_router(inverted(gsm8k(600, 800)), seed=0, **FAST).router
    assert router.verifier is not None and router.cascade is not None
    router.save(folder)
    return folder


def test_learn_refuses_to_promote_a_worse_router_and_force_writes_it(tmp_path, cascade_router):
    # older traffic has meaningless labels (scores shuffled across queries), the newest 100 pairs are true:
    # the router learned from the log is worse than the base (trained on 300 true GSM8K queries) on them
    log = tmp_path / "log.db"
    replay_data(permuted(gsm8k(300, 500), seed=1), log, cascade_router, shadow_rate=1.0, seed=0)
    replay_data(gsm8k(500, 600), log, cascade_router, shadow_rate=1.0, seed=0)
    out = tmp_path / "router"
    result = learn(log, out, base=cascade_router, holdout=1 / 3, verifier=False, **FAST)
    assert (result.n_pairs, result.n_train, result.n_holdout, result.n_holdout_queries) == (300, 200, 100, 100)
    assert not result.promoted and result.router is None
    assert result.new.apgr < result.base.apgr
    assert not result.test.better and result.test.lower_bound < 0
    assert not out.exists()
    summary = result.summary()
    assert "not promoted" in summary and "APGR" in summary and "lower bound @95%" in summary
    # the base serves strategy="cascade": a candidate without a verifier is refused for that too
    assert "the base router has a verifier and a cascade table" in result.reason
    # out did not exist: nothing was there to leave unchanged (behaviour fixed: it used to say "left unchanged")
    assert f"nothing written to {out}" in result.reason and "left unchanged" not in result.reason
    forced = learn(log, out, base=cascade_router, holdout=1 / 3, force=True, verifier=False, **FAST)
    assert forced.promoted and forced.new.apgr < forced.base.apgr and "NOT better" in forced.reason
    saved = HybridRouter.load(out)
    assert saved.info["learned"]["forced"] is True and saved.info["learned"]["pairs"] == 300
    assert saved.info["learned"]["measured_on_holdout"] is True
    lines = records(out)
    assert [r["promoted"] for r in lines] == [False, True] and lines[1]["forced"] is True
    assert lines[0]["test"]["lower_bound"] == result.test.lower_bound and lines[0]["holdout_queries"] == 100


def test_learn_refuses_a_gain_within_noise(tmp_path, true_log, cascade_router):
    # the base learned GSM8K from 300 true queries, the candidate from 210 others: as good as each other, so
    # whatever the held-out point estimate says, the test must not call the difference a gain
    out = tmp_path / "router"
    result = learn(true_log, out, base=cascade_router, holdout=0.3, **FAST)
    assert result.capabilities["new"] == {"verifier": True, "cascade table": True}
    assert not result.promoted and not result.test.better, result.summary()
    assert result.test.lower_bound <= 0.0 < result.test.p_value
    assert result.test.lower_bound < result.test.gain
    assert "lower bound" in result.reason and "95% confidence on 90 held-out queries" in result.reason
    assert not out.exists() and records(out)[0]["promoted"] is False


def test_learn_promotes_a_clearly_better_router_and_never_writes_a_refit_of_another_configuration(
    tmp_path, true_log, wrong_way_router_dir
):
    out = tmp_path / "router"
    result = learn(true_log, out, base=wrong_way_router_dir, holdout=0.3, refit_all=True, **FAST)
    assert result.promoted, result.summary()
    assert result.test.better and result.test.lower_bound > 0 and result.cost.ok
    assert (result.n_train, result.n_holdout, result.n_holdout_queries) == (210, 90, 90)
    loaded = HybridRouter.load(out)
    assert loaded.verifier is not None and loaded.cascade is not None  # answers were logged: verifier trained
    learned = loaded.info["learned"]
    assert learned["test"]["better"] is True and learned["cost_check"]["ok"] is True
    # the auto recipe cross-validates its head and the verifier's inputs on 168 training queries (too few: its
    # fallback) and again on 240 of all 300 pairs, and chooses others there: the refit is not the configuration
    # that was measured, so the measured router is written
    assert "chose another configuration" in result.reason and "the measured router was written" in result.reason
    assert learned["refit_on_all_pairs"] is False and learned["measured_on_holdout"] is True
    assert loaded.encoder_layers == 3 and loaded.info["recipe"] == "auto"
    assert 0.0 <= loaded.score("Tom has 3 apples and buys 5 more. How many apples does he have?") <= 1.0
    assert [r["promoted"] for r in records(out)] == [True]
    # a second run without --base compares with the router now in --out
    assert load_base(None, out)[1] == f"current ({out})"


def test_an_empty_small_answer_never_costs_the_verifier(tmp_path, true_log, wrong_way_router_dir):
    # one small answer of the older traffic is empty (a tool-call turn): it used to drop the verifier for all
    log = tmp_path / "log.db"
    shutil.copy(true_log, log)
    conn = sqlite3.connect(log)
    conn.execute("UPDATE calls SET answer='' WHERE id=(SELECT MIN(id) FROM calls WHERE answered_by='small')")
    conn.commit()
    conn.close()
    out = tmp_path / "router"
    result = learn(log, out, base=wrong_way_router_dir, holdout=0.3, **FAST)
    assert "dropped 1 of 210 training queries without a real small answer" in result.reason
    assert result.capabilities["new"] == {"verifier": True, "cascade table": True}
    assert result.promoted, result.summary()
    loaded = HybridRouter.load(out)
    assert loaded.verifier is not None and loaded.cascade is not None
    assert (
        loaded.info["learned"]["measured_on_holdout"] is True and loaded.info["learned"]["refit_on_all_pairs"] is False
    )
    # a candidate without a verifier passes the test and the cost check here, yet never replaces a cascade router
    before = (out / "router.json").read_bytes()
    bare = learn(log, out, base=wrong_way_router_dir, holdout=0.3, verifier=False, **FAST)
    assert bare.test.better and bare.cost.ok and bare.capabilities["new"]["verifier"] is False
    assert not bare.promoted and (out / "router.json").read_bytes() == before
    assert f"{out} left unchanged" in bare.reason and [r["promoted"] for r in records(out)] == [True, False]
    assert (
        "the base router has a verifier and a cascade table (strategy='cascade'), the new one does not" in bare.reason
    )


def test_learn_cli_prints_the_tables_and_promotes_the_measured_router(tmp_path, true_log, wrong_way_router_dir):
    out = tmp_path / "cli_router"
    args = ["--base", str(wrong_way_router_dir), "--encoder-layers", "3", "--confidence", "0.9", "--no-refit"]
    proc = cli("learn", str(true_log), "--out", str(out), *args)
    assert proc.returncode == 0, proc.stderr
    for text in (
        "APGR",
        "CA@1%drop",
        "large@",
        "oracle",
        "promoted:",
        "trained on the oldest 240",
        "60 held-out queries",
        "lower bound @90%",
        "cost check",
        "verifier",
        f"recorded in {out}.learn.jsonl",
    ):
        assert text in proc.stdout, proc.stdout
    loaded = HybridRouter.load(out)
    assert loaded.encoder_layers == 3 and loaded.info["learned"]["measured_on_holdout"] is True
    (line,) = records(out)
    assert line["promoted"] and line["holdout_queries"] == 60 and line["test"]["confidence"] == 0.9
    assert "--confidence must be in" in one_error_line(
        cli("learn", str(true_log), "--out", str(out), "--confidence", "1.5"), "learn"
    )


def test_a_holdout_below_the_minimum_is_refused_with_how_many_more_are_needed(tmp_path, cascade_router):
    log = tmp_path / "log.db"
    replay_data(gsm8k(1100, 1200), log, cascade_router, shadow_rate=1.0, seed=0)
    out = tmp_path / "router"
    more = queries_needed(0.2, MIN_HOLDOUT_QUERIES) - 100  # 20 held out of 100 queries
    assert more > 0
    with pytest.raises(LearnError, match=f"at least {MIN_HOLDOUT_QUERIES} distinct queries held out") as err:
        learn(log, out, base=cascade_router, verifier=False, **FAST)
    assert f"{more} more scored distinct queries needed" in str(err.value) and "--force" in str(err.value)
    line = one_error_line(cli("learn", str(log), "--out", str(out), "--encoder-layers", "3"), "learn")
    assert f"{more} more" in line and "20 held out" in line
    assert not out.exists() and [r["refused"] for r in records(out)] == ["too few pairs"] * 2
    # --force still decides and writes, on as few as 10 held-out queries
    # (refit_all: the same configuration, the auto recipe's fallback head on 64 and on 80 training queries, refitted
    # on all 100 pairs, and said to be unmeasured)
    forced = learn(log, out, base=cascade_router, force=True, verifier=False, refit_all=True, **FAST)
    assert forced.promoted and forced.n_holdout_queries == 20 and forced.test.n == 20
    assert not forced.better and "NOT better" in forced.reason  # it has no verifier, the base has one
    learned = HybridRouter.load(out).info["learned"]
    assert learned["forced"] is True and learned["refit_on_all_pairs"] is True and not learned["measured_on_holdout"]
    assert "NOT measured on the holdout" in forced.reason and "NOT measured on the holdout" in learned["written"]
    assert HybridRouter.load(out).encoder_layers == 3


def test_a_repeated_query_is_never_on_both_sides_of_the_split(tmp_path, cascade_router):
    # 80 queries, 10 of the oldest asked again, then 20 new ones: a query is as new as its newest pair, and every
    # pair of a query is on the side of its newest (a split by pairs would train on a query's first asking and
    # measure on its second)
    log = tmp_path / "log.db"
    replay_data(gsm8k(1100, 1180), log, cascade_router, shadow_rate=1.0, seed=0)
    replay_data(gsm8k(1100, 1110), log, cascade_router, shadow_rate=1.0, seed=1)
    replay_data(gsm8k(1180, 1200), log, cascade_router, shadow_rate=1.0, seed=2)
    pairs = ordered_pairs(log, "recorded")
    assert len(pairs) == 110 and len({p.query_id for p in pairs}) == 100
    repeated = {p.query_id for p in pairs[80:90]}
    newest = {p.query_id for p in pairs[90:]}
    for holdout, held_queries, held_pairs, expected in ((0.2, 20, 20, newest), (0.3, 30, 40, newest | repeated)):
        train, hold = split_by_query(pairs, holdout)
        train_ids, hold_ids = {p.query_id for p in train}, {p.query_id for p in hold}
        assert not train_ids & hold_ids and len(train) + len(hold) == 110
        assert hold_ids == expected and (len(hold_ids), len(hold)) == (held_queries, held_pairs)
        assert [p for p in pairs if p in hold] == hold  # log order kept on each side


def _synthetic(n: int, seed: int):
    """Per-query qualities like GSM8K's (0/1 for each model) and a router's scores: the oracle's, blurred."""
    rng = np.random.default_rng(seed)
    small = (rng.random(n) < 0.64).astype(float)
    large = np.where(rng.random(n) < 0.75, np.maximum(small, rng.random(n) < 0.85), rng.random(n) < 0.5).astype(float)
    oracle = small - large
    return small, large, lambda noise: oracle + noise * rng.standard_normal(n)


def test_promotion_test_never_promotes_an_identical_router():
    for n in (25, 50, 100, 500):
        for seed in range(3):
            small, large, router = _synthetic(n, seed)
            scores = router(1.5)
            result = promotion_test(scores, scores.copy(), small, large, seed=seed)
            assert result.gain == 0.0 and result.lower_bound == 0.0 and not result.better
            assert result.p_value == 1.0 and result.n == n


def test_promotion_test_promotes_a_clearly_better_router_on_500_queries_and_is_fast():
    small, large, router = _synthetic(500, 0)
    base, new = router(3.0), router(0.7)
    started = time.perf_counter()
    result = promotion_test(base, new, small, large, n_boot=2000, seed=0)
    elapsed = time.perf_counter() - started
    assert elapsed < 5.0  # about 0.1 s on one core; generous for a loaded CI machine
    assert result.better and result.lower_bound > 0.05 and result.p_value < 0.01
    assert result.base_apgr == pytest.approx(evaluate_scores("b", base, small, large).apgr, abs=1e-12)
    assert result.new_apgr == pytest.approx(evaluate_scores("n", new, small, large).apgr, abs=1e-12)
    assert result.gain == pytest.approx(result.new_apgr - result.base_apgr)
    # the same pair the other way round is refused, and a min_gain above the gain refuses the better one
    assert not promotion_test(new, base, small, large, seed=0).better
    assert not promotion_test(base, new, small, large, min_gain=result.gain, seed=0).better
    # deterministic for a seed
    assert promotion_test(base, new, small, large, seed=0) == result


def test_promotion_test_refuses_within_noise_and_when_apgr_cannot_rank():
    # two routers of the same quality on 50 queries: refused at every seed tried
    for seed in range(5):
        small, large, router = _synthetic(50, seed)
        assert not promotion_test(router(1.5), router(1.5), small, large, seed=seed).better
    small, large, router = _synthetic(100, 7)
    no_gap = promotion_test(router(3.0), router(0.5), large, small, seed=0)  # the small model is the better one
    assert not no_gap.better and "cannot rank" in no_gap.note
    with pytest.raises(ValueError, match="confidence"):
        promotion_test(small, small, small, large, confidence=1.0)
    with pytest.raises(ValueError, match="equal length"):
        promotion_test(small[:3], small, small, large)


def test_vectorised_apgr_equals_evaluate_scores():
    for n, seed in ((5, 0), (37, 1), (300, 2)):
        small, large, router = _synthetic(n, seed)
        scores = np.round(router(1.0), 1)  # ties included
        expected = evaluate_scores("r", scores, small, large).apgr
        assert apgr_resampled(scores, small, large)[0] == pytest.approx(expected, abs=1e-12)
        # rows of a batch are independent; a row with no large-vs-small gap is 1.0, as in evaluate_scores
        rows = apgr_resampled(np.stack([scores, scores]), np.stack([small, large]), np.stack([large, large]))
        assert rows[0] == pytest.approx(expected, abs=1e-12) and rows[1] == 1.0
        assert evaluate_scores("flat", scores, large, large).apgr == pytest.approx(1.0)


def test_cost_check_at_the_base_operating_point():
    small = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    large = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0])  # large better on 2, 3, 5, 8; worse on 7
    base = np.array([0.0, 0.0, -1.0, -1.0, 0.0, -1.0, 0.0, 1.0, 0.5, 0.0])
    # at -0.5 the base sends 2, 3, 5 large: 30% of calls, quality 0.9
    new = np.array([-2.0, 0.0, -1.0, -1.0, 0.0, -1.0, 0.0, 1.0, 0.0, 0.0])  # wastes its first large call on 0
    check = cost_check(base, new, small, large, base_threshold=-0.5)
    assert check.base_large == pytest.approx(0.3) and check.base_quality == pytest.approx(0.9)
    assert check.new_large == pytest.approx(0.4) and not check.ok and check.tolerance == COST_TOLERANCE
    assert cost_check(base, new, small, large, base_threshold=-0.5, tolerance=0.1).ok
    same = cost_check(base, base.copy(), small, large, base_threshold=-0.5)
    assert same.ok and same.new_large == pytest.approx(0.3)
    # the oracle at -0.5 beats always-large (it keeps query 7 small); a router in the reverse order never reaches it
    oracle = small - large
    never = cost_check(oracle, -oracle, small, large, base_threshold=-0.5)
    assert never.base_quality == pytest.approx(1.0) and never.new_large is None and not never.ok
    assert "never" in never.row().values() and "failed" in never.row().values()


def _decision(target: str) -> Answered:
    return Answered(RouteDecision(target, 0.7, 0.5, "test:quality_threshold", 0.5), target, None, ("s", "l"))


def test_bad_logs_are_one_clear_error(tmp_path, cascade_router):
    out = str(tmp_path / "out")
    empty = tmp_path / "empty.db"
    RoutingLog(empty).close()
    assert "no calls" in one_error_line(cli("learn", str(empty), "--out", out), "learn")
    with pytest.raises(LearnError, match="no calls"):
        learn(empty, out)

    unscored = tmp_path / "unscored.db"
    with RoutingLog(unscored) as log:
        for i in range(5):
            log.log_call(f"question {i}", _decision("large"), f"answer {i}")
    line = one_error_line(cli("learn", str(unscored), "--out", out), "learn")
    assert "no scores and no call with both models' answers" in line

    foreign = tmp_path / "app.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    assert "not a routing log" in one_error_line(cli("learn", str(foreign), "--out", out), "learn")
    assert foreign.read_bytes() == before
    with pytest.raises(LogFileError):
        learn(foreign, out)

    text = tmp_path / "notes.txt"
    text.write_text("not a database at all\n")
    assert "not a SQLite database" in one_error_line(cli("learn", str(text), "--out", out), "learn")
    assert "not found" in one_error_line(cli("learn", str(tmp_path / "missing.db"), "--out", out), "learn")

    few = tmp_path / "few.db"
    replay_data(gsm8k(1100, 1120), few, cascade_router, shadow_rate=1.0, seed=0)
    line = one_error_line(cli("learn", str(few), "--out", out), "learn")
    assert "20 pair(s)" in line and "at least" in line
    assert "holdout" in one_error_line(cli("learn", str(few), "--out", out, "--holdout", "1.5"), "learn")
    assert not (tmp_path / "out").exists()
