"""The SQLite routing log: non-blocking writes, durability under SIGKILL, privacy mode, shadow answers."""

import sqlite3
import threading
import time

import pytest
from log_killer import kill_after_flushes

from hybrid_router import Answered, RouteDecision
from hybrid_router.traffic.routing_log import RoutingLog, read_calls

DECISION = RouteDecision("small", 0.8, 0.5, "kwarg:quality_threshold", 0.5)
ANSWERED = Answered(DECISION, "small", None, ("tiny-model", "big-model"))
CONVO = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "What is 2+2?"}]


def test_rows_round_trip(tmp_path):
    with RoutingLog(tmp_path / "log.db", prices={"tiny-model": (1, 2)}, source="test") as log:
        call_id = log.log_call(CONVO, ANSWERED, "4", input_tokens=10, output_tokens=1, latency_s=0.01)
    (row,) = list(read_calls(tmp_path / "log.db"))
    assert row["call_id"] == row["pair_id"] == call_id
    assert row["query"].startswith("What is 2+2?") and row["answer"] == "4" and row["model"] == "tiny-model"
    assert row["route"] == "small" and row["score"] == 0.8 and row["threshold_source"] == "kwarg:quality_threshold"
    assert row["cost"] == pytest.approx((10 * 1 + 1 * 2) / 1e6) and row["fallback"] == 0 and row["source"] == "test"


def test_store_text_false_keeps_only_a_hash(tmp_path):
    with RoutingLog(tmp_path / "log.db", store_text=False) as log:
        log.log_call(CONVO, ANSWERED, "4")
    (row,) = list(read_calls(tmp_path / "log.db"))
    assert row["conversation"] is None and row["query"] is None and row["answer"] is None
    assert len(row["conversation_sha256"]) == 64
    assert b"2+2" not in (tmp_path / "log.db").read_bytes()


def test_logging_does_not_block_the_caller(tmp_path):
    with RoutingLog(tmp_path / "log.db") as log:
        start = time.perf_counter()
        for _ in range(500):
            log.log_call(CONVO, ANSWERED, "4")
        per_call = (time.perf_counter() - start) / 500
        log.flush()
        assert len(list(read_calls(tmp_path / "log.db"))) == 500
    assert per_call < 0.005  # generous bound: the benchmark measures the real overhead


def test_shadow_answers_run_in_background_and_pair_up(tmp_path):
    release = threading.Event()

    def slow_other():
        release.wait(5)
        return "four", 3, 1

    with RoutingLog(tmp_path / "log.db", shadow_rate=1.0) as log:
        call_id = log.log_call(CONVO, ANSWERED, "4")
        start = time.perf_counter()
        future = log.maybe_shadow(call_id, CONVO, ANSWERED, slow_other)
        assert future is not None and time.perf_counter() - start < 0.1 and not future.done()
        release.set()
        future.result(5)
    rows = list(read_calls(tmp_path / "log.db"))
    shadow = [r for r in rows if r["kind"] == "shadow"][0]
    assert shadow["pair_id"] == call_id and shadow["answered_by"] == "large" and shadow["model"] == "big-model"
    assert shadow["answer"] == "four"


def test_shadow_rate_zero_and_failures(tmp_path):
    with RoutingLog(tmp_path / "log.db", shadow_rate=0.0) as log:
        assert log.maybe_shadow("x", CONVO, ANSWERED, lambda: ("a", 1, 1)) is None
    with RoutingLog(tmp_path / "log2.db", shadow_rate=1.0) as log:
        log.maybe_shadow("x", CONVO, ANSWERED, lambda: 1 / 0).result(5)
    (row,) = list(read_calls(tmp_path / "log2.db"))
    assert "ZeroDivisionError" in row["error"] and row["answer"] is None
    with pytest.raises(ValueError, match="shadow_rate"):
        RoutingLog(tmp_path / "x.db", shadow_rate=2)


def test_sigkill_mid_write_loses_no_committed_row_and_never_corrupts(tmp_path):
    db = tmp_path / "log.db"
    committed = kill_after_flushes(str(db))  # SIGKILL, while the child keeps writing
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    count = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    conn.close()
    assert count >= committed >= 1000
