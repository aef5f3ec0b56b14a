"""The routing log never loses rows silently: flush at exit, visible write failures, a bounded shadow backlog."""

import gc
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import weakref

import pytest

from hybrid_router import Answered, RouteDecision
from hybrid_router.traffic.routing_log import RoutingLog, RoutingLogWriteError, read_calls

DECISION = RouteDecision("small", 0.8, 0.5, "kwarg:quality_threshold", 0.5)
ANSWERED = Answered(DECISION, "small", None, ("tiny-model", "big-model"))
KEY = "sk-proj-abcdefghijklmnop1234"


def count_rows(path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    finally:
        conn.close()


def run_child(script: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_rows_are_committed_when_the_script_just_ends(tmp_path):
    db = tmp_path / "log.db"
    run_child(f"""
        from hybrid_router import Answered, RouteDecision
        from hybrid_router.traffic.routing_log import RoutingLog
        answered = Answered(RouteDecision("large", 0.1, 0.5, "default", 0.5), "large", None, ("s", "l"))
        log = RoutingLog({str(db)!r})
        for i in range(300):
            log.log_call("query " + str(i), answered, "answer " * 20)
        # no flush, no close: the interpreter exits normally
    """)
    assert count_rows(db) == 300


def test_shadow_answers_in_flight_at_exit_are_committed(tmp_path):
    db = tmp_path / "log.db"
    run_child(f"""
        import time
        from hybrid_router import Answered, RouteDecision
        from hybrid_router.traffic.routing_log import RoutingLog
        answered = Answered(RouteDecision("small", 0.9, 0.5, "default", 0.5), "small", None, ("s", "l"))
        log = RoutingLog({str(db)!r}, shadow_rate=1.0)

        def slow_other():
            time.sleep(0.3)
            return "shadow answer", 1, 1

        for i in range(5):
            call_id = log.log_call("query " + str(i), answered, "answer")
            log.maybe_shadow(call_id, "query " + str(i), answered, slow_other)
    """)
    rows = list(read_calls(db))
    assert sorted(r["kind"] for r in rows) == ["answer"] * 5 + ["shadow"] * 5


def full_log(path) -> RoutingLog:
    """A routing log whose database cannot grow any more (SQLite's max_page_count: a real SQLITE_FULL)."""
    log = RoutingLog(path)
    log.log_call("warm-up", ANSWERED, "ok")
    log.flush()
    pages = log._conn.execute("PRAGMA page_count").fetchone()[0]
    log._conn.execute(f"PRAGMA max_page_count = {pages}")
    return log


def test_a_full_database_makes_flush_raise_and_warn(tmp_path):
    db = tmp_path / "log.db"
    log = full_log(db)
    with pytest.warns(RuntimeWarning, match="rows are being dropped"):
        for i in range(400):
            log.log_call(f"query {i}", ANSWERED, "a long answer " * 50)
        with pytest.raises(RoutingLogWriteError, match="could not be written") as caught:
            log.flush()
    assert caught.value.dropped > 0 and log.dropped == caught.value.dropped
    log.close()  # everything lost was already reported by flush
    assert count_rows(db) - 1 + log.dropped == 400


def test_close_raises_for_rows_it_could_not_write(tmp_path):
    log = full_log(tmp_path / "log.db")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(50):
            log.log_call(f"query {i}", ANSWERED, "a long answer " * 50)
        with pytest.raises(RoutingLogWriteError) as caught:
            log.close()
    assert caught.value.dropped == log.dropped > 0


def test_an_error_leaving_a_with_block_is_not_masked_by_lost_rows(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(KeyError, match="the caller's own error"):
            with full_log(tmp_path / "log.db") as log:
                log.log_call("q", ANSWERED, "a long answer " * 500)
                raise KeyError("the caller's own error")
    assert log.dropped == 1


def test_calls_logged_after_close_are_counted_as_dropped(tmp_path):
    log = RoutingLog(tmp_path / "log.db")
    log.close()
    with pytest.warns(RuntimeWarning, match="closed"):
        log.log_call("late", ANSWERED, "answer")
    assert log.dropped == 1 and count_rows(tmp_path / "log.db") == 0


def test_the_shadow_backlog_is_bounded(tmp_path):
    release = threading.Event()

    def blocked_other():
        release.wait(10)
        return "other", 1, 1

    with RoutingLog(tmp_path / "log.db", shadow_rate=1.0, max_shadow_backlog=3) as log:
        futures = [log.maybe_shadow(f"p{i}", f"q{i}", ANSWERED, blocked_other) for i in range(10)]
        assert sum(f is not None for f in futures) == 3 and log.shadow_skipped == 7
        release.set()
        for f in futures[:3]:
            f.result(10)
        assert log.maybe_shadow("again", "q", ANSWERED, lambda: ("x", 1, 1)) is not None  # slots come back
    assert len(list(read_calls(tmp_path / "log.db", kind="shadow"))) == 4
    with pytest.raises(ValueError, match="max_shadow_backlog"):
        RoutingLog(tmp_path / "x.db", max_shadow_backlog=0)


def test_the_error_column_is_redacted(tmp_path):
    def leaky_other():
        raise PermissionError(f"401 Incorrect API key provided: {KEY}")

    with RoutingLog(tmp_path / "log.db", shadow_rate=1.0) as log:
        call_id = log.log_call("q", ANSWERED, "partial", error=f"stream cut: Authorization: Bearer {KEY}")
        log.maybe_shadow(call_id, "q", ANSWERED, leaky_other).result(10)
    rows = {r["kind"]: r for r in read_calls(tmp_path / "log.db")}
    assert "[REDACTED]" in rows["answer"]["error"] and "[REDACTED]" in rows["shadow"]["error"]
    assert "PermissionError" in rows["shadow"]["error"]
    assert KEY.encode() not in (tmp_path / "log.db").read_bytes()


def test_an_unreferenced_log_is_collected_and_its_rows_committed(tmp_path):
    log = RoutingLog(tmp_path / "log.db")
    for i in range(20):
        log.log_call(f"q{i}", ANSWERED, "a")
    ref = weakref.ref(log)
    del log
    deadline = time.monotonic() + 10
    while ref() is not None and time.monotonic() < deadline:  # queued rows hold it until they are written
        gc.collect()
        time.sleep(0.01)
    assert ref() is None  # neither the writer thread nor the exit hook keeps the log alive
    assert count_rows(tmp_path / "log.db") == 20


@pytest.mark.parametrize("bad", [True, 1.5, float("nan"), "0.5"])
def test_shadow_rate_must_be_a_real_fraction(tmp_path, bad):
    with pytest.raises(ValueError, match="shadow_rate"):
        RoutingLog(tmp_path / "log.db", shadow_rate=bad)
