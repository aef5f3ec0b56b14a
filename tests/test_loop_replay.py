"""``replay``: recorded traffic through the real routing path into a real routing log, scored; deterministic."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from test_loop_common import cli, gsm8k, one_error_line

from hybrid_router.core.options import RoutingOptions
from hybrid_router.loop.replay import PLACEHOLDER, RECORDED_SCORER, replay_data
from hybrid_router.traffic.exports import scored_pairs
from hybrid_router.traffic.log_scoring import read_scores
from hybrid_router.traffic.routing_log import read_calls


def _log_view(path):
    """Per query: (route, answered_by, answer, router score), the shadowed queries, and per (query, model) score."""
    calls = list(read_calls(path))
    by_id = {c["call_id"]: c for c in calls}
    answers = {
        c["query"]: (c["route"], c["answered_by"], c["answer"], c["score"]) for c in calls if c["kind"] == "answer"
    }
    shadowed = sorted(by_id[c["pair_id"]]["query"] for c in calls if c["kind"] == "shadow")
    scores = {(by_id[s["call_id"]]["query"], by_id[s["call_id"]]["answered_by"]): s["score"] for s in read_scores(path)}
    return answers, shadowed, scores


def test_replay_is_deterministic_for_a_seed_and_scored_with_the_recorded_scores(tmp_path, cascade_router):
    data = gsm8k(300, 420)
    a, b, c = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "c.db"
    # a 300-query router's certified default sends every call large (1% cannot be certified on 300 rows): route at
    # the median score instead, so that both models answer some calls
    threshold = float(np.median(cascade_router.score_texts(data.queries)))
    at = RoutingOptions(quality_threshold=threshold)
    sa = replay_data(data, a, cascade_router, shadow_rate=0.5, seed=7, options=at)
    sb = replay_data(data, b, cascade_router, shadow_rate=0.5, seed=7, options=at)
    replay_data(data, c, cascade_router, shadow_rate=0.5, seed=8, options=at)
    assert (sa.calls, sa.small, sa.large, sa.shadowed) == (sb.calls, sb.small, sb.large, sb.shadowed)
    assert sa.calls == 120 and 30 < sa.shadowed < 90
    assert sa.small > 0 and sa.large > 0  # the router really routed
    view_a, view_b, view_c = _log_view(a), _log_view(b), _log_view(c)
    assert view_a == view_b
    assert view_a[1] != view_c[1]  # another seed samples other shadow calls
    answers, shadowed, scores = view_a
    # routes are the router's decisions, answers the recorded answers of the model that answered
    scores_now = cascade_router.score_texts(data.queries)
    for i, query in enumerate(data.queries):
        route, answered_by, answer, score = answers[query]
        assert score == pytest.approx(float(scores_now[i]), abs=1e-6)
        assert route == answered_by == ("small" if score >= threshold else "large")
        assert answer == (data.small_answers if answered_by == "small" else data.large_answers)[i]
        assert scores[(query, answered_by)] == float(
            (data.mean_small() if answered_by == "small" else data.mean_large())[i]
        )
    # every shadowed query is a scored pair with both recorded scores
    assert {r["scorer"] for r in read_scores(a)} == {RECORDED_SCORER}
    pairs = scored_pairs(a, RECORDED_SCORER)
    assert sorted(p.query for p in pairs) == shadowed and len(pairs) == sa.shadowed
    index = {q: i for i, q in enumerate(data.queries)}
    for p in pairs:
        i = index[p.query]
        assert (p.small_score, p.large_score) == (data.mean_small()[i], data.mean_large()[i])
        assert p.small["answer"] == data.small_answers[i] and p.large["answer"] == data.large_answers[i]
    assert sa.scored == 120 + sa.shadowed


def test_replay_cli_without_answers_logs_placeholders_and_rejects_bad_input(tmp_path, cascade_router):
    data = gsm8k(420, 450)
    path = tmp_path / "scores_only.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["query", "small_score", "large_score"])
        for q, s, l in zip(data.queries, data.mean_small(), data.mean_large()):
            w.writerow([q, s, l])
    router_dir = cascade_router.save(tmp_path / "router")
    log = tmp_path / "log.db"
    proc = cli("replay", str(path), "--log", str(log), "--shadow-rate", "1", "--router", str(router_dir), "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    assert "replayed 30 queries" in proc.stdout and "30 shadowed" in proc.stdout and "placeholders" in proc.stdout
    calls = list(read_calls(log))
    assert len(calls) == 60
    assert {c["answer"] for c in calls} == {PLACEHOLDER.format(target="small"), PLACEHOLDER.format(target="large")}
    pairs = scored_pairs(log, RECORDED_SCORER)
    assert len(pairs) == 30
    got = sorted((p.small_score, p.large_score) for p in pairs)
    assert got == sorted(zip(data.mean_small().tolist(), data.mean_large().tolist()))
    # user errors: one line, exit 2
    assert "not found" in one_error_line(cli("replay", str(tmp_path / "nope.csv"), "--log", str(log)), "replay")
    bad = tmp_path / "bad.csv"
    bad.write_text("query,small_score,large_score\nhello,x,1\n")
    assert "bad.csv:2" in one_error_line(cli("replay", str(bad), "--log", str(tmp_path / "l2.db")), "replay")
    foreign = tmp_path / "notalog.db"
    foreign.write_text("plain text")
    line = one_error_line(cli("replay", str(path), "--log", str(foreign), "--router", str(router_dir)), "replay")
    assert "not a SQLite database" in line
    assert cli("replay", str(path), "--log", str(log), "--shadow-rate", "1.5").returncode == 2
    assert np.isfinite(data.mean_small()).all()
