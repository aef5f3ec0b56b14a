"""``learn``: real logs, real training; a worse router is never promoted, bad logs are one clear error."""

from __future__ import annotations

import sqlite3

import pytest
from test_loop_common import cli, gsm8k, one_error_line, permuted

from hybrid_router.core.answered import Answered
from hybrid_router.core.decision import RouteDecision
from hybrid_router.core.encoder import Encoder
from hybrid_router.core.router import HybridRouter
from hybrid_router.loop.learn import LearnError, learn
from hybrid_router.loop.replay import replay_data
from hybrid_router.traffic.routing_log import LogFileError, RoutingLog
from hybrid_router.train.training import train_router

FAST = dict(encoder=Encoder(layers=3), depths=None)


@pytest.fixture(scope="module")
def true_log(tmp_path_factory, cascade_router):
    """300 GSM8K queries (not the fixture router's) replayed with shadow answers for every call."""
    path = tmp_path_factory.mktemp("learn") / "true.db"
    replay_data(gsm8k(800, 1100), path, cascade_router, shadow_rate=1.0, seed=0)
    return path


@pytest.fixture(scope="module")
def noise_router_dir(tmp_path_factory):
    """A router trained on 200 GSM8K queries whose labels were shuffled across queries: it learned nothing."""
    folder = tmp_path_factory.mktemp("noise_router")
    train_router(permuted(gsm8k(600, 800)), verifier=False, seed=0, **FAST).router.save(folder)
    return folder


def test_learn_refuses_to_promote_a_worse_router_and_force_writes_it(tmp_path, cascade_router):
    # older traffic has meaningless labels (scores shuffled across queries), the newest 100 pairs are true:
    # the router learned from the log is worse than the base (trained on 300 true GSM8K queries) on them
    log = tmp_path / "log.db"
    replay_data(permuted(gsm8k(300, 500), seed=1), log, cascade_router, shadow_rate=1.0, seed=0)
    replay_data(gsm8k(500, 600), log, cascade_router, shadow_rate=1.0, seed=0)
    out = tmp_path / "router"
    result = learn(log, out, base=cascade_router, holdout=1 / 3, verifier=False, **FAST)
    assert (result.n_pairs, result.n_train, result.n_holdout) == (300, 200, 100)
    assert not result.promoted and result.router is None
    assert result.new.apgr < result.base.apgr
    assert not out.exists()
    assert "not promoted" in result.summary() and "APGR" in result.summary()
    forced = learn(log, out, base=cascade_router, holdout=1 / 3, force=True, verifier=False, refit_all=False, **FAST)
    assert forced.promoted and forced.new.apgr < forced.base.apgr
    saved = HybridRouter.load(out)
    assert saved.info["learned"]["forced"] is True and saved.info["learned"]["pairs"] == 300


def test_learn_promotes_a_better_router_with_its_verifier(tmp_path, true_log, noise_router_dir):
    out = tmp_path / "router"
    result = learn(true_log, out, base=noise_router_dir, holdout=0.3, **FAST)
    assert result.promoted, result.summary()
    assert result.new.apgr > result.base.apgr
    assert (result.n_train, result.n_holdout) == (210, 90)
    loaded = HybridRouter.load(out)
    assert loaded.verifier is not None and loaded.cascade is not None  # answers were logged: verifier trained
    assert loaded.info["learned"]["refit_on_all_pairs"] and loaded.info["n_train"] == 300
    assert 0.0 <= loaded.score("Tom has 3 apples and buys 5 more. How many apples does he have?") <= 1.0
    # a second run compares with the router now in --out
    again = learn(true_log, out, holdout=0.3, verifier=False, refit_all=False, min_gain=0.5, **FAST)
    assert again.base.name == f"current ({out})" and not again.promoted
    assert HybridRouter.load(out).info["learned"]["holdout_apgr"] == loaded.info["learned"]["holdout_apgr"]


def test_learn_cli_prints_the_table_and_promotes(tmp_path, true_log, noise_router_dir):
    out = tmp_path / "cli_router"
    proc = cli("learn", str(true_log), "--out", str(out), "--base", str(noise_router_dir), "--encoder-layers", "3")
    assert proc.returncode == 0, proc.stderr
    for text in ("APGR", "CA@1%drop", "large@", "oracle", "promoted:", "trained on the oldest 240"):
        assert text in proc.stdout, proc.stdout
    assert HybridRouter.load(out).encoder_layers == 3


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
