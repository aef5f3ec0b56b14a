"""The routing log on a real PostgreSQL (started by ``tests/pg_fixture.py``): the SQLite log's guarantees and readers.

Writes off the request path, no flushed row lost when the writing process is killed, no secrets stored, shadow
answers, several processes writing one log, and every reader (score-log, export-pairs / export-sft, report, learn's
counts, replay) giving on PostgreSQL what it gives on an equivalent SQLite log. Without PostgreSQL these tests skip
and say why (the URL-error tests run everywhere).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from log_killer import kill_after_flushes
from pg_fixture import free_port, start_or_skip

from hybrid_router import Answered, RouteDecision
from hybrid_router.cli import main
from hybrid_router.loop.learn import count_calls, ensure_scored, ordered_pairs
from hybrid_router.loop.report import build_report
from hybrid_router.traffic.exports import export_pairs, export_sft
from hybrid_router.traffic.log_scoring import JudgeScorer, MatchScorer, read_scores, score_log
from hybrid_router.traffic.routing_log import (
    LogDatabaseError,
    LogFileError,
    RoutingLog,
    RoutingLogWriteError,
    open_log,
    read_calls,
)

KEY = "sk-proj-abcdefghijklmnop1234"
PASSWORD = "Hunter2-Secret-Pw"
SMALL = Answered(RouteDecision("small", 0.8, 0.5, "kwarg:quality_threshold", 0.5), "small", None, ("tiny", "big"))
CONVO = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "What is 2+2?"}]
VOLATILE = ("id", "call_id", "pair_id", "created", "latency_s")


def stable(rows: list[dict]) -> list[dict]:
    """Rows without the columns that differ between two runs (ids, times)."""
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def count(server, db: str, where: str = "") -> int:
    return server.query(db, f"SELECT count(*) FROM calls {where}")[0][0]


def run_child(script: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="session")
def postgres_server():
    """The session's PostgreSQL server on 127.0.0.1 (the tests that need it skip, saying why, without one)."""
    server = start_or_skip()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_db(postgres_server) -> str:
    """The name of a fresh database in the session's server."""
    return postgres_server.create_database()


@pytest.fixture
def pg_url(postgres_server, pg_db) -> str:
    """A ``postgresql://`` URL of a fresh database."""
    return postgres_server.url(pg_db)


# ----------------------------------------------------------------------------------------------- writing
def test_calls_and_shadow_answers_round_trip_like_sqlite(pg_url, tmp_path):
    def write(target):
        release = threading.Event()

        def slow_other():
            release.wait(5)
            return "four", 3, 1

        with RoutingLog(target, shadow_rate=1.0, prices={"tiny": (1, 2)}, source="test") as log:
            start = time.perf_counter()
            call_id = log.log_call(CONVO, SMALL, "4", input_tokens=10, output_tokens=1, latency_s=0.01)
            future = log.maybe_shadow(call_id, CONVO, SMALL, slow_other)
            assert time.perf_counter() - start < 0.1 and not future.done()  # the shadow call runs in the background
            release.set()
            future.result(5)
        return call_id, list(read_calls(target))

    call_id, rows = write(pg_url)
    answer, shadow = rows
    assert answer["call_id"] == answer["pair_id"] == shadow["pair_id"] == call_id
    assert answer["kind"] == "answer" and shadow["kind"] == "shadow" and answer["id"] < shadow["id"]
    assert answer["query"].startswith("What is 2+2?") and answer["answer"] == "4" and shadow["answer"] == "four"
    assert answer["cost"] == pytest.approx((10 * 1 + 1 * 2) / 1e6) and answer["source"] == "test"
    assert shadow["answered_by"] == "large" and shadow["model"] == "big"
    assert isinstance(answer["created"], float) and abs(answer["created"] - time.time()) < 60  # DOUBLE, not float4
    assert [r["call_id"] for r in read_calls(pg_url, kind="shadow")] == [shadow["call_id"]]
    _, sqlite_rows = write(tmp_path / "log.db")
    assert stable(rows) == stable(sqlite_rows)


def test_logging_does_not_wait_for_the_database(pg_url):
    with RoutingLog(pg_url) as log:
        start = time.perf_counter()
        for i in range(500):
            log.log_call(f"query {i}", SMALL, "4")
        per_call = (time.perf_counter() - start) / 500
        log.flush()
        assert len(list(read_calls(pg_url))) == 500
    assert per_call < 0.005  # the writer thread talks to the server, never the caller


def test_reading_pages_through_a_large_log(pg_url, monkeypatch):
    from hybrid_router.traffic import routing_log

    monkeypatch.setattr(routing_log, "READ_PAGE", 7)
    with RoutingLog(pg_url) as log:
        for i in range(30):
            log.log_call(f"query {i}", SMALL, "a")
    assert [r["query"] for r in read_calls(pg_url)] == [f"query {i}" for i in range(30)]
    assert len(list(read_calls(pg_url, kind="answer"))) == 30 and list(read_calls(pg_url, kind="shadow")) == []


def test_no_secret_reaches_the_database(postgres_server, pg_db, caplog):
    url = postgres_server.url(pg_db, password=PASSWORD)  # trust auth ignores it, the log must never store or show it

    def leaky_other():
        raise PermissionError(f"401 Incorrect API key provided: {KEY}")

    with RoutingLog(url, shadow_rate=1.0) as log:
        assert PASSWORD not in log.name and "***" in log.name
        call_id = log.log_call("q", SMALL, "partial", error=f"stream cut: Authorization: Bearer {KEY}")
        log.maybe_shadow(call_id, "q", SMALL, leaky_other).result(10)
    with RoutingLog(url, store_text=False) as log:
        log.log_call("my private question about 2+2", SMALL, "my private answer")
    rows = {r["kind"]: r for r in read_calls(url) if r["query"] is not None}
    assert "[REDACTED]" in rows["answer"]["error"] and "[REDACTED]" in rows["shadow"]["error"]
    assert "PermissionError" in rows["shadow"]["error"]
    everything = repr(postgres_server.query(pg_db, "SELECT * FROM calls")) + repr(
        postgres_server.query(pg_db, "SELECT * FROM scores")
    )
    assert KEY not in everything and PASSWORD not in everything
    assert "private" not in everything and count(postgres_server, pg_db) == 3
    assert PASSWORD not in caplog.text


def test_lost_rows_are_counted_and_reported_without_the_password(postgres_server, pg_db, caplog):
    url = postgres_server.url(pg_db, password=PASSWORD)
    log = RoutingLog(url)
    log.log_call("warm-up", SMALL, "ok")
    log.flush()
    postgres_server.query(pg_db, "ALTER TABLE calls ADD CONSTRAINT refuse_rows CHECK (kind = 'never') NOT VALID")
    with pytest.warns(RuntimeWarning, match="rows are being dropped") as warned:
        for i in range(50):
            log.log_call(f"query {i}", SMALL, "a")
        with pytest.raises(RoutingLogWriteError, match="could not be written") as caught:
            log.flush()
    assert caught.value.dropped == log.dropped == 50 and "refuse_rows" in str(caught.value)
    assert PASSWORD not in str(caught.value) and PASSWORD not in str(warned[0].message)
    assert PASSWORD not in caplog.text and "***" in caplog.text
    log.close()
    assert count(postgres_server, pg_db) == 1


def test_the_writer_reconnects_after_the_server_drops_its_connection(postgres_server, pg_db):
    url = postgres_server.url(pg_db)
    with RoutingLog(url) as log:
        log.log_call("before", SMALL, "a")
        log.flush()
        killed = postgres_server.query(
            pg_db,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        assert killed == [(1,)]
        log.log_call("during", SMALL, "a")
        log.flush()  # the batch that met the dead connection is retried row by row on a new one: nothing lost
        assert log.dropped == 0
        log.log_call("after", SMALL, "a")
        log.flush()
    assert [r["query"] for r in read_calls(url)] == ["before", "during", "after"]


# ----------------------------------------------------------------------------------------------- processes
WRITER = """
    import sys, time
    from hybrid_router import Answered, RouteDecision
    from hybrid_router.traffic.routing_log import RoutingLog
    url, name, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    answered = Answered(RouteDecision("large", 0.1, 0.5, "default", 0.5), "large", None, ("s", "l"))
    while time.time() < start:  # all writers open the new log at the same moment: the schema race
        time.sleep(0.001)
    with RoutingLog(url, source=name, shadow_rate=0.5, seed=int(name[-1])) as log:
        for i in range(300):
            call_id = log.log_call(f"{name} query {i}", answered, "answer " * 20)
            log.maybe_shadow(call_id, f"{name} query {i}", answered, lambda: ("shadow", 1, 1))
            if i % 50 == 49:
                log.flush()
"""


def test_three_processes_write_one_log(postgres_server, pg_db):
    url = postgres_server.url(pg_db)
    start = time.time() + 4  # after the three interpreters have imported the package
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WRITER), url, f"writer{i}", str(start)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    for proc in procs:
        assert proc.wait(180) == 0, proc.stderr.read()
    rows = list(read_calls(url))
    answers = [r for r in rows if r["kind"] == "answer"]
    assert len(answers) == 900 and len({r["call_id"] for r in rows}) == len(rows)
    for i in range(3):
        mine = [r["query"] for r in answers if r["source"] == f"writer{i}"]
        assert mine == [f"writer{i} query {n}" for n in range(300)]  # each writer's rows, in its order
    shadows = [r for r in rows if r["kind"] == "shadow"]
    assert 0 < len(shadows) < 900 and {r["pair_id"] for r in shadows} <= {r["call_id"] for r in answers}


def test_many_logs_opening_a_new_database_at_once(pg_url):
    errors, barrier = [], threading.Barrier(8)

    def open_one(i):
        try:
            barrier.wait(10)
            with RoutingLog(pg_url) as log:
                log.log_call(f"q{i}", SMALL, "a")
        except Exception as exc:  # noqa: BLE001 (collected and shown)
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(list(read_calls(pg_url))) == 8


def test_sigkill_right_after_flush_loses_no_flushed_row(postgres_server, pg_db):
    flushed = kill_after_flushes(postgres_server.url(pg_db))  # SIGKILL right after a flush, while it keeps logging
    queries = {r[0] for r in postgres_server.query(pg_db, "SELECT query FROM calls")}
    assert {f"query number {i}" for i in range(flushed)} <= queries and flushed >= 1000


def test_rows_are_committed_when_the_script_just_ends(postgres_server, pg_db):
    url = postgres_server.url(pg_db)
    run_child(f"""
        from hybrid_router import Answered, RouteDecision
        from hybrid_router.traffic.routing_log import RoutingLog
        answered = Answered(RouteDecision("large", 0.1, 0.5, "default", 0.5), "large", None, ("s", "l"))
        log = RoutingLog({url!r})
        for i in range(300):
            log.log_call("query " + str(i), answered, "answer " * 20)
        # no flush, no close: the interpreter exits normally
    """)
    assert count(postgres_server, pg_db) == 300


def test_nul_characters_do_not_break_a_batch(pg_url):
    with RoutingLog(pg_url) as log:
        log.log_call("before", SMALL, "a")
        log.log_call("a\x00b", SMALL, "c\x00d")
        log.log_call("after", SMALL, "a")
    rows = list(read_calls(pg_url))
    assert [r["query"] for r in rows] == ["before", "a\ufffdb", "after"] and rows[1]["answer"] == "c\ufffdd"


# ----------------------------------------------------------------------------------------------- errors
def test_bad_urls_are_one_clear_error_without_the_password(tmp_path):
    closed = free_port()
    cases = {
        f"postgresql://alice:{PASSWORD}@127.0.0.1:{closed}/logs": "cannot connect",
        f"postgresql+psycopg://alice:{PASSWORD}@127.0.0.1:{closed}/logs": "cannot connect",
        f"postgresql://alice:{PASSWORD}@127.0.0.1:notaport/logs": "not a valid database URL",
        f"mysql://alice:{PASSWORD}@127.0.0.1/logs": "unsupported database 'mysql'",
        f"postgresql+nodriver://alice:{PASSWORD}@127.0.0.1/logs": "cannot use this database URL",
    }
    try:
        import psycopg  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError:  # without the extra, every URL says how to install it
        cases = {url: "pip install 'hybrid-llm[postgres]'" for url in cases}
    for url, message in cases.items():
        for attempt in (
            lambda url=url: RoutingLog(url),
            lambda url=url: list(read_calls(url)),
            lambda url=url: export_pairs(url, tmp_path / "p.csv"),
            lambda url=url: score_log(url, MatchScorer({})),
            lambda url=url: count_calls(url),
        ):
            with pytest.raises(LogFileError, match="^postgresql|^mysql") as caught:
                attempt()
            text = str(caught.value)
            assert message in text and PASSWORD not in text and "alice:***@" in text, text
            assert "\n" not in text
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("missing", ["psycopg", "sqlalchemy"])
def test_a_missing_driver_says_how_to_install_it(monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # as if it were not installed: importing it fails
    with pytest.raises(LogFileError, match=r"pip install 'hybrid-llm\[postgres\]'") as caught:
        RoutingLog(f"postgresql://alice:{PASSWORD}@127.0.0.1:5432/logs")
    assert PASSWORD not in str(caught.value) and "alice:***@" in str(caught.value)


def test_bad_url_in_the_cli_is_one_error_line_without_the_password(tmp_path):
    url = f"postgresql://alice:{PASSWORD}@127.0.0.1:{free_port()}/logs"
    for args in (
        ["export-pairs", url, str(tmp_path / "p.csv")],
        ["report", url],
        ["score-log", url, "--scorer", "embed"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "hybrid_router.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"hybrid-llm {args[0]}: error: postgresql://") and PASSWORD not in line, line


def test_a_database_without_a_log_or_with_foreign_tables(postgres_server, pg_db):
    url = postgres_server.url(pg_db)
    with pytest.raises(LogFileError, match="no routing log in this database"):
        list(read_calls(url))
    with pytest.raises(LogDatabaseError, match='database "no_such_db" does not exist'):
        RoutingLog(postgres_server.url("no_such_db"))
    postgres_server.query(pg_db, "CREATE TABLE calls (id SERIAL PRIMARY KEY, customer TEXT)")
    for attempt in (lambda: RoutingLog(url), lambda: open_log(url), lambda: list(read_calls(url))):
        with pytest.raises(LogFileError, match="'calls' table that is not a routing log's"):
            attempt()
    tables = postgres_server.query(
        pg_db, "SELECT table_name FROM information_schema.tables WHERE table_schema='public'"
    )
    assert tables == [("calls",)]  # left unchanged: no scores table was added


# ----------------------------------------------------------------------------------------------- readers
QUESTIONS = {"What is 3 + 4?": "7", "What is 10 - 6?": "4", "What is 5 + 5?": "10", "What is 9 - 2?": "7"}


def traffic(target) -> None:
    """The same traffic into any log: routed calls with router scores and costs, each with a shadow answer."""
    with RoutingLog(target, shadow_rate=1.0, prices={"tiny": (1, 2), "big": (10, 20)}, source="test") as log:
        for n in range(3):
            for i, (question, reference) in enumerate(QUESTIONS.items()):
                score = round(0.1 + 0.07 * (i + 4 * n), 3)
                target_model = "small" if score >= 0.5 else "large"
                answered = Answered(
                    RouteDecision(target_model, score, 0.5, "default", 0.5), target_model, None, SMALL.model_names
                )
                right, wrong = f"The answer is {reference}", f"The answer is {int(reference) + n + i % 2}"
                mine, other = (right, wrong) if target_model == "large" else (wrong, right)
                call_id = log.log_call(question, answered, mine, input_tokens=20, output_tokens=5)
                log.maybe_shadow(call_id, question, answered, lambda o=other: (o, 20, 6)).result(5)


def flaky_judge():
    """A scripted judge: grades by the answer's last number, but garbles its first verdict of every answer."""
    seen: set[str] = set()

    def complete(messages):
        answer = messages[1]["content"].split("[The Start of Assistant's Answer]\n")[1].split("\n[The End")[0]
        if answer not in seen:
            seen.add(answer)
            return "I cannot decide."
        return f"Rating: [[{min(10, int(answer.split()[-1]))}]]"

    return complete


def scores_of(target, scorer):
    return sorted((r["score"], r["raw"], r["error"]) for r in read_scores(target, scorer))


def test_score_log_exports_report_and_learn_read_postgres_like_sqlite(pg_url, tmp_path):
    sqlite = tmp_path / "log.db"
    for target in (pg_url, sqlite):
        traffic(target)
    assert stable(list(read_calls(pg_url))) == stable(list(read_calls(sqlite)))
    assert count_calls(pg_url) == count_calls(sqlite) == (12, 12)
    # score-log: match, then a judge whose garbled verdicts are retried (the upsert replaces the error rows)
    summaries = {}
    for target in (pg_url, sqlite):
        refs = MatchScorer(QUESTIONS)
        first = score_log(target, refs)
        again = score_log(target, refs)
        judge = JudgeScorer(flaky_judge())
        judged = score_log(target, judge)
        retried = score_log(target, judge, retry_errors=True)
        summaries[str(target)] = (first, again, judged, retried)
    assert summaries[pg_url] == summaries[str(sqlite)]
    first, again, judged, retried = summaries[pg_url]
    assert first.scored == 24 and again.skipped == 24 and judged.errors > 0 and retried.errors < judged.errors
    for scorer in ("match", "judge"):
        assert scores_of(pg_url, scorer) == scores_of(sqlite, scorer)
    # exports
    for name, target in (("pg", pg_url), ("sqlite", sqlite)):
        export_pairs(target, tmp_path / f"{name}.csv", scorer="match")
        export_sft(target, tmp_path / f"{name}.jsonl", min_score=1, scorer="match")
    assert (tmp_path / "pg.csv").read_text() == (tmp_path / "sqlite.csv").read_text()
    assert len(list(csv.DictReader(open(tmp_path / "pg.csv")))) == 12
    sft = (tmp_path / "pg.jsonl").read_text()
    assert sft.count("\n") == 4 and [len(x) for x in sft.splitlines()] == [
        len(x) for x in (tmp_path / "sqlite.jsonl").read_text().splitlines()
    ]
    # report and learn's reading path
    pg_report, sqlite_report = build_report(pg_url, scorer="match"), build_report(sqlite, scorer="match")
    assert pg_report.format().replace(pg_url, "LOG") == sqlite_report.format().replace(str(sqlite), "LOG")
    assert pg_report.n_pairs == 12 and pg_report.all_large_cost is not None
    assert ensure_scored(pg_url, "match") == "match"
    assert [(p.query, p.small_score, p.large_score) for p in ordered_pairs(pg_url, "match")] == [
        (p.query, p.small_score, p.large_score) for p in ordered_pairs(sqlite, "match")
    ]


def test_the_cli_reads_a_postgres_log(pg_url, tmp_path, capsys):
    sqlite = tmp_path / "log.db"
    refs = tmp_path / "refs.csv"
    refs.write_text("query,reference\n" + "".join(f"{q},{r}\n" for q, r in QUESTIONS.items()))
    outputs = {}
    for name, target in (("pg", pg_url), ("sqlite", str(sqlite))):
        traffic(target)
        assert main(["score-log", target, "--scorer", "match", "--references", str(refs)]) == 0
        assert main(["export-pairs", target, str(tmp_path / f"{name}.csv")]) == 0
        assert main(["report", target]) == 0
        outputs[name] = capsys.readouterr().out.replace(target, "LOG").replace(f"{name}.csv", "OUT.csv")
    assert outputs["pg"] == outputs["sqlite"] and "scored 24 calls" in outputs["pg"]
    assert (tmp_path / "pg.csv").read_text() == (tmp_path / "sqlite.csv").read_text()


def test_replay_into_a_postgres_log(pg_url, tmp_path, default_router):
    from hybrid_router import load_routing_data
    from hybrid_router.loop.replay import replay_data
    from hybrid_router.train.data import shipped_path

    data = load_routing_data(shipped_path("routellm_gsm8k_answers")).subset(list(range(12)))
    pg = replay_data(data, pg_url, default_router, shadow_rate=0.5, seed=3)
    lite = replay_data(data, tmp_path / "log.db", default_router, shadow_rate=0.5, seed=3)
    assert (pg.calls, pg.small, pg.large, pg.shadowed, pg.scored) == (
        lite.calls,
        lite.small,
        lite.large,
        lite.shadowed,
        lite.scored,
    )
    shadows_first_come = sorted(map(repr, stable(list(read_calls(pg_url)))))  # shadow rows land in any order
    assert shadows_first_come == sorted(map(repr, stable(list(read_calls(tmp_path / "log.db")))))
    assert scores_of(pg_url, "recorded") == scores_of(tmp_path / "log.db", "recorded")
