"""Files that are not routing logs: one clear error, and a foreign SQLite database is never modified."""

import hashlib
import os
import sqlite3
import subprocess
import sys

import pytest

from hybrid_router import Answered, RouteDecision
from hybrid_router.traffic.exports import export_pairs, export_sft
from hybrid_router.traffic.routing_log import LogFileError, RoutingLog, read_calls

ANSWERED = Answered(RouteDecision("small", 0.8, 0.5, "default", 0.5), "small", None, ("s", "l"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hybrid_router.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def one_error_line(done: subprocess.CompletedProcess, command: str) -> str:
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"hybrid-llm {command}: error: ")
    return line


def foreign_database(path):
    """An application's own SQLite database (rollback journal, no routing-log tables)."""
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'ada');")
    conn.close()
    return path


def snapshot(folder):
    """Every file in the folder with the SHA-256 of its bytes."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


COMMANDS = {
    "export-pairs": lambda log, out: ["export-pairs", log, out],
    "export-sft": lambda log, out: ["export-sft", log, out, "--min-score", "1"],
    "score-log": lambda log, out: ["score-log", log, "--scorer", "embed"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_foreign_sqlite_database_is_refused_and_left_unchanged(tmp_path, command):
    folder = tmp_path / "db"
    folder.mkdir()
    db = foreign_database(folder / "app.db")
    before = snapshot(folder)
    line = one_error_line(run_cli(*COMMANDS[command](str(db), str(tmp_path / "out"))), command)
    assert str(db) in line and "not a routing log" in line
    assert snapshot(folder) == before  # no new tables, no -wal / -shm files
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["users"]
    conn.close()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_file_that_is_not_sqlite_is_one_clear_error(tmp_path, command):
    log = tmp_path / "notes.db"
    log.write_text("these are my notes, not a database\n" * 20)
    line = one_error_line(run_cli(*COMMANDS[command](str(log), str(tmp_path / "out"))), command)
    assert str(log) in line and "not a SQLite database" in line
    assert log.read_text().startswith("these are my notes")


def test_the_python_api_refuses_too(tmp_path):
    db = foreign_database(tmp_path / "app.db")
    before = db.read_bytes()
    for attempt in (
        lambda: list(read_calls(db)),
        lambda: export_pairs(db, tmp_path / "p.csv"),
        lambda: export_sft(db, tmp_path / "s.jsonl", min_score=1),
        lambda: RoutingLog(db),
    ):
        with pytest.raises(LogFileError, match="not a routing log"):
            attempt()
    assert db.read_bytes() == before and not (tmp_path / "app.db-wal").exists()
    text = tmp_path / "notes.txt"
    text.write_text("plain text")
    with pytest.raises(LogFileError, match="not a SQLite database"):
        RoutingLog(text)
    with pytest.raises(LogFileError, match="is a directory"):
        RoutingLog(tmp_path)


def test_a_real_log_still_opens_for_writing_and_reading(tmp_path):
    db = tmp_path / "log.db"
    db.touch()  # an empty file is a new database
    with RoutingLog(db) as log:
        log.log_call("q", ANSWERED, "a")
    with RoutingLog(db) as log:  # reopening an existing log appends
        log.log_call("q2", ANSWERED, "b")
    assert [r["query"] for r in read_calls(db)] == ["q", "q2"]
    line = one_error_line(run_cli("export-pairs", str(db), str(tmp_path / "p.csv")), "export-pairs")
    assert "no scores yet" in line
