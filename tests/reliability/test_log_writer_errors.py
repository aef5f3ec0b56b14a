"""One bad row never kills the routing log's writer: bad rows are sanitised or dropped and counted, the queue is
bounded, and a writer that did stop makes flush and close raise (code review 2026-12-07, 1.4; issue #21)."""

import logging
import threading
import time
import warnings
from functools import partial

import pytest

from hybrid_router import Answered, RouteDecision
from hybrid_router.traffic import routing_log
from hybrid_router.traffic.routing_log import LogWriterError, RoutingLog, RoutingLogWriteError, read_calls

DECISION = RouteDecision("small", 0.9, 0.5, "default:quality_threshold")
ANSWERED = Answered(DECISION, "small", None, ("s", "l"))
SECRET = "my-private-user-text-42"


def answers(path) -> list:
    return [r["answer"] for r in read_calls(path)]


def hold_writer(log: RoutingLog) -> threading.Event:
    """Keep the writer busy on one row until the returned event is set, so later rows form one batch."""
    started, release = threading.Event(), threading.Event()

    def blocker():
        started.set()
        release.wait(10)
        return log._row("held-call", time.time(), "held", "small", "s", "held answer", None, None, None, kind="answer")

    log._queue(partial(blocker))
    assert started.wait(10)
    return release


def test_the_reviews_reproduction_a_lone_surrogate_answer_is_stored_sanitised(tmp_path):
    db = tmp_path / "log.db"
    log = RoutingLog(db)
    log.log_call("good question", ANSWERED, "fine answer")
    log.flush()
    log.log_call("another question", ANSWERED, "emoji: \ud83d")  # a streamed answer that split a surrogate pair
    for i in range(3):
        log.log_call(f"later {i}", ANSWERED, "later answer")
    log.flush(timeout=5)  # before the fix: TimeoutError, the writer thread was dead
    log.close()  # reports nothing lost
    assert log.dropped == 0
    assert answers(db) == ["fine answer", "emoji: \ufffd"] + ["later answer"] * 3


def test_a_lone_surrogate_in_the_conversation_is_hashed_or_dropped_and_counted(tmp_path):
    convo = [{"role": "user", "content": "split \udc00 pair"}]
    with RoutingLog(tmp_path / "hashed.db", store_text=False) as log:  # privacy mode: only the hash is stored
        log.log_call(convo, ANSWERED, "ok")
        log.flush(timeout=5)  # before the fix: the hash failed to encode, the row was dropped
    (row,) = read_calls(tmp_path / "hashed.db")
    assert row["conversation"] is None and len(row["conversation_sha256"]) == 64 and log.dropped == 0
    db = tmp_path / "text.db"
    log = RoutingLog(db)  # the router text rejects such a query (as routing does): dropped, counted, not fatal
    with pytest.warns(RuntimeWarning, match="could not build a row: ValueError"):
        log.log_call(convo, ANSWERED, "ok")
        log.log_call("next", ANSWERED, "next answer")
        with pytest.raises(RoutingLogWriteError):
            log.flush(timeout=5)
    log.close()
    assert log.dropped == 1 and answers(db) == ["next answer"]


def test_an_int_beyond_64_bits_drops_only_its_row_counted_and_logged_once_without_text(tmp_path, caplog):
    db = tmp_path / "log.db"
    log = RoutingLog(db)
    release = hold_writer(log)  # the bad rows and the good ones are written as one batch
    with caplog.at_level(logging.WARNING, logger=routing_log.__name__):
        log.log_call(SECRET, ANSWERED, SECRET, output_tokens=2**64)
        log.log_call("good 0", ANSWERED, "good answer", input_tokens=2**63 - 1)
        log.log_call(SECRET, ANSWERED, SECRET, input_tokens=-(2**63) - 1)
        log.log_call("good 1", ANSWERED, "good answer")
        with pytest.warns(RuntimeWarning, match="rows are being dropped"):
            release.set()
            with pytest.raises(RoutingLogWriteError) as caught:
                log.flush(timeout=5)  # before the fix: TimeoutError (OverflowError killed the writer)
    assert caught.value.dropped == log.dropped == 2
    assert answers(db) == ["held answer", "good answer", "good answer"]
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "OverflowError" in warned[0].getMessage()  # once per kind of failure
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert SECRET not in str(caught.value)
    log.log_call("after", ANSWERED, "still written")
    log.close()  # the writer lives on; nothing new was lost
    assert answers(db)[-1] == "still written"


def test_a_failed_batch_is_retried_row_by_row(tmp_path):
    db = tmp_path / "log.db"
    log = RoutingLog(db)
    release = hold_writer(log)
    log.log_call("good 0", ANSWERED, "good answer")
    log.log_call("bad", ANSWERED, ["not", "text"])  # sqlite3 cannot bind a list: the whole batch failed before
    log.log_call("good 1", ANSWERED, "good answer")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        release.set()
        with pytest.raises(RoutingLogWriteError, match="could not be written") as caught:
            log.flush(timeout=5)
    assert caught.value.dropped == log.dropped == 1
    assert answers(db) == ["held answer", "good answer", "good answer"]
    log.close()


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path):
    assert routing_log.MAX_QUEUED_ROWS == 10_000
    db = tmp_path / "log.db"
    log = RoutingLog(db, max_queued_rows=5)
    release = hold_writer(log)  # nothing is written while the rows arrive
    with pytest.warns(RuntimeWarning, match="queue is full"):
        start = time.perf_counter()
        for i in range(8):
            log.log_call(f"q{i}", ANSWERED, "answer")
        assert time.perf_counter() - start < 1.0  # never waits for the writer
    assert log.dropped == 3
    release.set()
    with pytest.raises(RoutingLogWriteError) as caught:
        log.flush(timeout=5)
    assert caught.value.dropped == 3
    log.close()
    assert len(answers(db)) == 1 + 5
    with pytest.raises(ValueError, match="max_queued_rows"):
        RoutingLog(tmp_path / "x.db", max_queued_rows=0)


class WriterKilled(BaseException):
    """Something the writer cannot recover from (only a BaseException gets past its per-batch handling)."""


def test_a_dead_writer_makes_flush_and_close_raise(tmp_path, monkeypatch):
    def die(self, items):
        raise WriterKilled()

    db = tmp_path / "log.db"
    log = RoutingLog(db)
    monkeypatch.setattr(routing_log._Writer, "_write", die)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        log.log_call("q", ANSWERED, "lost")
        with pytest.raises(LogWriterError, match="writer thread stopped") as caught:
            log.flush(timeout=5)  # before the fix: TimeoutError after the timeout
        assert caught.value.dropped == 1 and "WriterKilled" in str(caught.value)
        log.log_call("later", ANSWERED, "lost too")  # counted at once, never queued for a dead writer
        assert log.dropped == 2
        with pytest.raises(LogWriterError) as caught:
            log.flush(timeout=5)
        with pytest.raises(LogWriterError) as caught:
            log.close()  # before the fix: returned as if all were well
    assert answers(db) == []
