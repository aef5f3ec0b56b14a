"""The routing log: one row per routed call (and per shadow answer), written off the request path.

Both wrappers accept a :class:`RoutingLog`. ``log_call`` only puts a record on a queue (microseconds); a
background thread writes batches in transactions to SQLite in WAL mode, so a killed process loses at most the
rows not yet committed and never corrupts the file. Given a ``postgresql://`` URL instead of a file path, the log
lives in PostgreSQL (:mod:`hybrid_router.traffic.log_postgres`, ``pip install 'hybrid-llm[postgres]'``), with the
same tables and guarantees, and several server processes can write one log at once. Only conversation text,
answers and routing metadata are stored — never request kwargs, headers or API keys. With ``store_text=False``
the conversation and answer are replaced by a SHA-256 of the conversation (privacy mode; such rows cannot be
scored or exported).

With ``shadow_rate=p`` a fraction ``p`` of calls also gets an answer from the model *not* chosen, in a background
thread (never delaying the user's answer); it is logged as a ``shadow`` row sharing the call's ``pair_id``, so the
log holds pairs of answers for the same query — teacher data for retraining the router and distilling the small
model (``hybrid-llm score-log``, ``export-pairs``, ``export-sft``).

The writer never dies of one bad row: a batch that fails is retried row by row, so only the rows that cannot be
written are lost, each counted in ``dropped`` (and logged once per kind of failure, never with the row's text).
Before writing, strings are made storable: a lone surrogate (a stream that split a surrogate pair) becomes U+FFFD.
A row holding an integer outside the 64-bit range that SQLite and PostgreSQL ``BIGINT`` store (e.g. a bogus token
count) is dropped and counted, not stored as text, so both databases keep the columns' types. At most
:data:`MAX_QUEUED_ROWS` rows wait for the writer; beyond that a new row is dropped and counted, never blocking the
caller. Should the writer thread itself stop, :meth:`RoutingLog.flush` and :meth:`RoutingLog.close` raise
:class:`LogWriterError` rather than time out or return as if all were well.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import random
import re
import sqlite3
import threading
import time
import uuid
import warnings
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, Union

from ..core.answered import Answered
from ..core.conversation import message_role_and_text, router_text
from ..core.options import validate_fraction
from ..core.pricing import PriceTable
from ..core.redact import redact

if TYPE_CHECKING:
    from .log_postgres import PostgresConnection

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    call_id TEXT UNIQUE NOT NULL,
    pair_id TEXT NOT NULL,
    kind TEXT NOT NULL,              -- 'answer' (what the user got) or 'shadow' (the other model, for pairs)
    created REAL NOT NULL,
    source TEXT,                     -- 'langchain', 'llamaindex', 'serve', ...
    conversation TEXT,               -- JSON [[role, text], ...]; NULL when store_text=False
    conversation_sha256 TEXT NOT NULL,
    query TEXT,                      -- the router text; NULL when store_text=False
    route TEXT, answered_by TEXT NOT NULL, model TEXT,
    score REAL, threshold REAL, threshold_source TEXT,
    answer TEXT,
    input_tokens INTEGER, output_tokens INTEGER, cost REAL, latency_s REAL,
    fallback INTEGER NOT NULL DEFAULT 0, fallback_reason TEXT, error TEXT
);
CREATE INDEX IF NOT EXISTS calls_pair ON calls(pair_id);
CREATE TABLE IF NOT EXISTS scores (
    call_id TEXT NOT NULL, scorer TEXT NOT NULL, score REAL, raw TEXT, error TEXT, created REAL NOT NULL,
    PRIMARY KEY (call_id, scorer)
);
"""
COLUMNS = (
    "call_id",
    "pair_id",
    "kind",
    "created",
    "source",
    "conversation",
    "conversation_sha256",
    "query",
    "route",
    "answered_by",
    "model",
    "score",
    "threshold",
    "threshold_source",
    "answer",
    "input_tokens",
    "output_tokens",
    "cost",
    "latency_s",
    "fallback",
    "fallback_reason",
    "error",
)
SCORE_COLUMNS = ("call_id", "scorer", "score", "raw", "error", "created")
SQLITE_HEADER = b"SQLite format 3\x00"
DEFAULT_SHADOW_BACKLOG = 64
#: Most rows waiting for the writer thread; a row logged while this many wait is dropped and counted.
MAX_QUEUED_ROWS = 10_000
#: The integers SQLite's INTEGER and PostgreSQL's BIGINT hold; a row with an int column outside them is dropped.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Rows per query when :func:`read_calls` pages through a log (by row id, so memory stays flat on a big log).
READ_PAGE = 2000
_STOP = object()
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
logger = logging.getLogger(__name__)

#: A routing log to open: a SQLite file path, or a database URL (``postgresql://user@host:port/db``).
LogTarget = Union[str, Path]
#: An open routing log: a SQLite connection, or a PostgreSQL one with the same small API (execute, executemany,
#: ``with conn:`` for one transaction, close; ``?`` placeholders).
LogConnection = Union[sqlite3.Connection, "PostgresConnection"]


class LogFileError(ValueError):
    """A file that is not a routing log (not SQLite at all, or a SQLite database of something else), or a database
    URL that cannot be used as one (bad URL, missing driver, unreachable server, foreign tables)."""


class LogDatabaseError(LogFileError):
    """The database server behind a URL log failed (connection refused or lost, a statement failed); the message
    names the log with its password masked, ``reason`` says what failed."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.reason = reason


def is_database_url(target: object) -> bool:
    """True for a database URL such as ``postgresql://user@host/db`` (anything else is a SQLite file path)."""
    return isinstance(target, str) and _URL.match(target) is not None


def mask_url(url: str) -> str:
    """``url`` with its password (``user:password@`` or ``password=`` in the query) replaced by ``***``."""
    url = re.sub(r"(?<=://)([^/\s:@]*):[^/\s@]*@", r"\1:***@", url)
    return re.sub(r"(?i)([?&]password=)[^&\s]*", r"\1***", url)


def log_name(target: LogTarget) -> str:
    """How a log is named in messages: the file path, or the URL with its password masked."""
    return mask_url(target) if is_database_url(target) else str(target)


class LogWriterError(RuntimeError):
    """The routing log's writer thread stopped: nothing logged since is written (``reason`` says why it stopped)."""

    def __init__(self, path: Path | str, reason: str, dropped: int = 0):
        lost = f"; {dropped} row(s) not written" if dropped else ""
        super().__init__(f"routing log {path}: the writer thread stopped ({reason}){lost}")
        self.path = path
        self.reason = reason
        self.dropped = dropped


def _storable_text(value: str) -> str:
    """``value`` with each lone surrogate (unencodable in UTF-8) replaced by U+FFFD; valid pairs are joined."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def _storable(value: Any) -> Any:
    """A column value the database can store: text made UTF-8-safe; ``OverflowError`` for a too-large int."""
    if isinstance(value, str):
        return _storable_text(value)
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise OverflowError("an integer column is outside the 64-bit range")  # never the value: it is the row's
    return value


def _is_row_error(exc: BaseException) -> bool:
    """True when ``exc`` is about one row (bad value, constraint) rather than the database (disk full, no server)."""
    if isinstance(exc, sqlite3.OperationalError):
        return False
    return not (isinstance(exc, LogDatabaseError) and exc.reason.startswith("cannot connect"))


def _row_error(exc: BaseException) -> tuple[str, str]:
    """(kind, message) for a row the database refused: the database's message, or only the exception's type."""
    if isinstance(exc, LogDatabaseError):  # the server's first line, redacted (its row-quoting DETAIL is not kept)
        return exc.reason.split(":", 1)[0], exc.reason
    if isinstance(exc, sqlite3.Error):  # SQLite's messages name parameters and constraints, never values
        return type(exc).__name__, f"{type(exc).__name__}: {exc}"
    return type(exc).__name__, type(exc).__name__


class RoutingLogWriteError(OSError):
    """Rows could not be written (e.g. the disk or database is full); ``dropped`` says how many were lost."""

    def __init__(self, path: Path | str, dropped: int, cause: str | None):
        super().__init__(f"routing log {path}: {dropped} row(s) could not be written ({cause})")
        self.path = path
        self.dropped = dropped


def _check_sqlite_file(path: Path) -> None:
    """A :class:`LogFileError` unless ``path`` is a SQLite database (an empty file counts as a new one)."""
    if path.is_dir():
        raise LogFileError(f"{path}: is a directory, not a routing log")
    with path.open("rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if header and header != SQLITE_HEADER:
        raise LogFileError(f"{path}: not a SQLite database, so not a routing log")


def _check_tables(conn: sqlite3.Connection, path: Path, *, new_ok: bool) -> None:
    """A :class:`LogFileError` unless the database holds the routing log's tables (or none at all, if ``new_ok``)."""
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if new_ok and not tables:
            return
        for table, columns in (("calls", COLUMNS), ("scores", SCORE_COLUMNS)):
            have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if not set(columns) <= have:
                raise LogFileError(
                    f"{path}: a SQLite database but not a routing log (no {table!r} table with the log's columns; "
                    f"its tables: {', '.join(sorted(tables)) or 'none'}); it was left unchanged"
                )
    except sqlite3.DatabaseError as exc:
        raise LogFileError(f"{path}: not a readable SQLite database ({exc}), so not a routing log") from exc


def connect(path: LogTarget) -> LogConnection:
    """Open (and create) a routing log database in WAL mode; :class:`LogFileError` for any other file.

    A ``postgresql://`` URL opens (and creates, race-free) the log's tables in that PostgreSQL database.
    """
    if is_database_url(path):
        from .log_postgres import open_postgres

        return open_postgres(str(path), create=True)
    path = Path(path)
    if path.exists():
        _check_sqlite_file(path)
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
    try:
        _check_tables(conn, path, new_ok=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


def open_log(path: LogTarget) -> LogConnection:
    """Open an existing routing log to read or grade it; never creates tables or changes its journal mode.

    ``FileNotFoundError`` when it is missing, :class:`LogFileError` (and the file untouched) when it is not a
    routing log. A ``postgresql://`` URL: :class:`LogFileError` when the database holds no routing log.
    """
    if is_database_url(path):
        from .log_postgres import open_postgres

        return open_postgres(str(path), create=False)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"routing log not found: {path}")
    _check_sqlite_file(path)
    conn = sqlite3.connect(str(path), timeout=30)
    try:
        _check_tables(conn, path, new_ok=False)
    except BaseException:
        conn.close()
        raise
    return conn


def conversation_pairs(messages: str | Sequence[Any]) -> list[list[str]]:
    """A conversation as ``[[role, text], ...]`` (a plain string is one user turn)."""
    if isinstance(messages, str):
        return [["user", messages]]
    return [list(message_role_and_text(m)) for m in messages]


class _Writer:
    """The writer thread: drains the queue in batches, one transaction each, and counts the rows it loses.

    It holds no reference to its :class:`RoutingLog`, so a log nobody references can be collected; the log's
    finalizer then stops the writer (also at interpreter exit), which commits whatever is still queued.
    """

    def __init__(self, conn: LogConnection, path: Path | str, max_queued: int = MAX_QUEUED_ROWS):
        self.conn = conn
        self.path = path  # for messages: never a URL's password
        self.queue: queue.Queue = queue.Queue()  # unbounded: put_row bounds the rows, markers always get in
        self.max_queued = max_queued
        self.dropped = 0
        self.failure: str | None = None  # why the thread stopped, when it stopped other than by stop()
        self._queued_rows = 0
        self._unreported = 0
        self._last_error: str | None = None
        self._warned_kinds: set[str] = set()
        self._lock = threading.Lock()
        self._put_lock = threading.Lock()
        self._stopped = False
        self.thread = threading.Thread(target=self.run, name="hybrid-llm-log", daemon=True)
        self.thread.start()

    def put_row(self, item: dict | partial) -> None:
        """Queue a row without ever blocking: dropped and counted when the queue is full or the writer stopped."""
        with self._put_lock:
            if self.failure is None and self._queued_rows < self.max_queued:
                self._queued_rows += 1
                self.queue.put(item)
                return
            full = self.failure is None
        if full:
            self.drop(1, f"the queue is full ({self.max_queued} rows wait for the writer)", kind="queue full")
        else:
            self.drop(1, f"the writer thread stopped ({self.failure})", kind="writer stopped")

    def put_marker(self, marker: object) -> None:
        """Queue a flush event or the stop marker; :class:`LogWriterError` when the writer thread has stopped."""
        with self._put_lock:
            if self.failure is None:
                self.queue.put(marker)
                return
        raise self.error()

    def error(self) -> LogWriterError:
        """The error saying the writer stopped (with the rows lost since the last report)."""
        n, _ = self.take_unreported()
        return LogWriterError(self.path, self.failure or "it is no longer running", n)

    @property
    def alive(self) -> bool:
        return self.failure is None and self.thread.is_alive()

    def run(self) -> None:
        """Write batches until the stop marker; should anything stop the thread, count what it leaves queued."""
        try:
            while not self._write_batch():
                pass
        except BaseException as exc:  # reported by flush and close (and the finalizer), not re-raised in the thread
            self._fail(exc)
            self._drain_after_failure()
        finally:
            try:
                self.conn.close()
            except Exception:  # the database is already gone; nothing left to write
                pass

    def _fail(self, exc: BaseException) -> None:
        """Mark the writer stopped: from now on rows are dropped at once and flush markers raise."""
        with self._put_lock:
            if self.failure is not None:
                return
            self.failure = type(exc).__name__
        logger.error("routing log: the writer thread of %s stopped: %s", self.path, self.failure)

    def _drain_after_failure(self) -> None:
        """Count the rows still queued as dropped and wake every flush waiting on them."""
        lost = 0
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, (dict, partial)):
                lost += 1
            elif isinstance(item, threading.Event):
                item.set()
            self.queue.task_done()
        if lost:
            self.drop(lost, f"the writer thread stopped ({self.failure})", kind="writer stopped")

    def _write_batch(self) -> bool:
        """Wait for items, write them in one transaction, wake flushers; True after the stop marker.

        A method of its own so that the batch (whose row builders reference the log) is released after each round.
        """
        batch = [self.queue.get()]
        while True:
            try:
                batch.append(self.queue.get_nowait())
            except queue.Empty:
                break
        items = [b for b in batch if isinstance(b, (dict, partial))]
        with self._put_lock:
            self._queued_rows -= len(items)
        try:
            self._write(items)
        except Exception as exc:  # a bug here must not stop logging: the batch is lost, counted
            self.drop(len(items), f"the batch failed: {type(exc).__name__}", kind=type(exc).__name__)
        except BaseException as exc:  # the thread stops: its batch counts as lost (before any flush is woken)
            self._fail(exc)
            self.drop(len(items), f"the writer thread stopped ({type(exc).__name__})", kind="writer stopped")
            raise
        finally:
            for b in batch:
                if isinstance(b, threading.Event):
                    b.set()
                self.queue.task_done()
        return any(b is _STOP for b in batch)

    def _write(self, items: list[dict | partial]) -> None:
        """Build and write the rows in one transaction; a failed batch is retried row by row.

        A row that cannot be built or stored (say an int beyond 64 bits) is dropped and counted alone. Messages
        name the failure's type and the database's own message (which names a column or constraint, not the
        row's text), never a Python exception's text (which may quote the row). A database-wide failure (disk
        full, no server) ends the retry: the rest of the batch is dropped with that error.
        """
        rows = []
        for item in items:
            try:
                row = item if isinstance(item, dict) else item()
                rows.append(tuple(_storable(row.get(c)) for c in COLUMNS))
            except Exception as exc:  # a row that cannot be built is counted and reported, never raised at a caller
                kind = type(exc).__name__
                self.drop(1, f"could not build a row: {kind}", kind=f"could not build a row: {kind}")
        if not rows:
            return
        try:
            self._insert(rows)  # one transaction per batch
        except Exception:  # retry row by row below: only the bad rows are lost
            pass
        else:
            return
        for i, row in enumerate(rows):
            try:
                self._insert([row])
            except Exception as exc:
                if _is_row_error(exc):
                    kind, error = _row_error(exc)
                    self.drop(1, f"a row could not be written: {error}", kind=f"a row could not be written: {kind}")
                    continue
                error = exc.reason if isinstance(exc, LogDatabaseError) else f"{type(exc).__name__}: {exc}"
                self.drop(len(rows) - i, error)  # the database's error (disk full, server gone): not the row's
                return

    def _insert(self, rows: list[tuple]) -> None:
        with self.conn:
            self.conn.executemany(
                f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})", rows
            )

    def drop(self, n: int, error: str, *, kind: str | None = None) -> None:
        """Count ``n`` lost rows; the first loss since the last report is also a warning.

        A database error (no ``kind``) is logged at ERROR each time; a row's own failure, named by ``kind``, is
        logged at WARNING once per kind. ``error`` must never hold a row's text.
        """
        with self._lock:
            first = self._unreported == 0
            self.dropped += n
            self._unreported += n
            self._last_error = error
            new_kind = kind is not None and kind not in self._warned_kinds
            if new_kind:
                self._warned_kinds.add(kind)
        if kind is None:
            logger.error("routing log: %d row(s) could not be written to %s: %s", n, self.path, error)
        elif new_kind:
            logger.warning(
                "routing log: %d row(s) dropped from %s: %s (logged once per kind of failure)", n, self.path, error
            )
        if first:
            warnings.warn(f"routing log {self.path}: rows are being dropped ({error})", RuntimeWarning, stacklevel=1)

    def take_unreported(self) -> tuple[int, str | None]:
        """The rows lost since the last call, and the last error (then the count restarts at 0)."""
        with self._lock:
            n, error = self._unreported, self._last_error
            self._unreported = 0
        return n, error

    def stop(self) -> None:
        """Commit everything queued, stop the thread and close the database (idempotent).

        Called on the writer thread itself (the log's last reference died there), it only asks the thread to stop.
        """
        if self._stopped:
            return
        self._stopped = True
        self.queue.put(_STOP)  # harmless when the thread already stopped (join returns at once)
        if threading.current_thread() is not self.thread:
            self.thread.join()


def _close_at_exit(writer: _Writer) -> None:
    """Finalizer of an unclosed log (interpreter exit or garbage collection): commit and report losses."""
    writer.stop()
    if writer.failure is not None:
        warnings.warn(str(writer.error()), RuntimeWarning, stacklevel=1)
        return
    n, error = writer.take_unreported()
    if n:
        warnings.warn(
            f"routing log {writer.path}: {n} row(s) could not be written ({error})", RuntimeWarning, stacklevel=1
        )


class RoutingLog:
    """Append-only log of routed calls; thread-safe, non-blocking writes, optional shadow answers.

    ``path`` is a SQLite file, or a ``postgresql://user@host:port/db`` URL (SQLAlchemy syntax; the driver is psycopg)
    for a log that several server processes write at once. Messages and errors name it by :attr:`name`, the URL
    with its password masked.

    Rows are committed by a background writer. :meth:`flush` and :meth:`close` raise :class:`RoutingLogWriteError`
    when rows could not be written since the last report (a warning is also issued when losses start), and
    ``dropped`` counts every row lost. A log that is never closed is closed at interpreter exit (or when it is
    garbage collected), so its queued rows are committed. At most ``max_shadow_backlog`` shadow calls wait or run
    at once; beyond that, calls are not shadowed (counted in ``shadow_skipped``). At most ``max_queued_rows`` rows
    wait for the writer; beyond that a row is dropped and counted. Should the writer thread stop, :meth:`flush` and
    :meth:`close` raise :class:`LogWriterError`.
    """

    def __init__(
        self,
        path: LogTarget,
        *,
        store_text: bool = True,
        shadow_rate: float = 0.0,
        prices: PriceTable | dict | None = None,
        source: str | None = None,
        seed: int | None = None,
        max_shadow_backlog: int = DEFAULT_SHADOW_BACKLOG,
        max_queued_rows: int = MAX_QUEUED_ROWS,
    ):
        self.shadow_rate = validate_fraction("shadow_rate", shadow_rate)
        if isinstance(max_shadow_backlog, bool) or not isinstance(max_shadow_backlog, int) or max_shadow_backlog < 1:
            raise ValueError(f"max_shadow_backlog must be a positive integer, got {max_shadow_backlog!r}")
        if isinstance(max_queued_rows, bool) or not isinstance(max_queued_rows, int) or max_queued_rows < 1:
            raise ValueError(f"max_queued_rows must be a positive integer, got {max_queued_rows!r}")
        self.path: Path | str = str(path) if is_database_url(path) else Path(path)
        self.name = log_name(self.path)
        self.store_text = store_text
        self.prices = prices if isinstance(prices, PriceTable) else PriceTable(prices)
        self.source = source
        self.shadow_skipped = 0
        self._rng = random.Random(seed)
        self._conn = connect(self.path)
        self._writer = _Writer(self._conn, self.name, max_queued_rows)
        self._finalizer = weakref.finalize(self, _close_at_exit, self._writer)
        self._shadow_pool: ThreadPoolExecutor | None = None
        self._shadow_slots = threading.BoundedSemaphore(max_shadow_backlog)
        self._shadow_lock = threading.Lock()
        self._closed = False

    @property
    def dropped(self) -> int:
        """Rows lost so far: not written (a database error, a row that cannot be stored), logged while the queue
        was full or after :meth:`close`, or left queued when the writer thread stopped."""
        return self._writer.dropped

    def _queue(self, item: dict | partial) -> None:
        if self._closed:
            self._writer.drop(1, "the log is closed")
        else:
            self._writer.put_row(item)

    # ------------------------------------------------------------ writing
    def _row(
        self,
        call_id: str,
        created: float,
        messages: str | Sequence[Any],
        answered_by: str,
        model: str | None,
        answer: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        latency_s: float | None,
        **extra: Any,
    ) -> dict:
        """Build one row (runs on the writer thread, off the request path)."""
        pairs = conversation_pairs(messages)
        convo_json = _storable_text(json.dumps(pairs, ensure_ascii=False))  # hashed as stored
        price = self.prices.get(model)
        row = {
            "call_id": call_id,
            "pair_id": call_id,
            "created": created,
            "source": self.source,
            "conversation_sha256": hashlib.sha256(convo_json.encode()).hexdigest(),
            "answered_by": answered_by,
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost": price.cost(input_tokens or 0, output_tokens or 0) if price else None,
            "latency_s": latency_s,
            "fallback": 0,
            **extra,
        }
        for key in ("error", "fallback_reason"):
            if row.get(key) is not None:
                row[key] = redact(row[key])
        if self.store_text:
            row.update(conversation=convo_json, query=router_text(messages), answer=answer)
        return row

    def log_call(
        self,
        messages: str | Sequence[Any],
        answered: Answered,
        answer: str | None,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        latency_s: float | None = None,
        source: str | None = None,
        error: str | None = None,
    ) -> str:
        """Queue one routed call; returns its ``call_id`` (also the ``pair_id`` of a shadow answer).

        ``error`` marks a call that failed after (part of) an answer, e.g. a stream cut short; it is stored
        redacted. Only a reference to the inputs is queued here; the row is built and written by the writer thread.
        """
        call_id = uuid.uuid4().hex
        messages = messages if isinstance(messages, str) else list(messages)
        meta = answered.metadata()
        extra = {"source": source} if source else {}
        self._queue(
            partial(
                self._row,
                call_id,
                time.time(),
                messages,
                answered.answered_by,
                meta["model"],
                answer,
                input_tokens,
                output_tokens,
                latency_s,
                kind="answer",
                route=meta["route"],
                score=meta["score"],
                threshold=meta["threshold"],
                threshold_source=meta["threshold_source"],
                fallback=int(answered.fallback),
                fallback_reason=meta["fallback_reason"],
                error=error,
                **extra,
            )
        )
        return call_id

    def maybe_shadow(
        self,
        pair_id: str,
        messages: str | Sequence[Any],
        answered: Answered,
        run_other: Callable[[], tuple[str, int | None, int | None]],
    ) -> Future | None:
        """With probability ``shadow_rate``, answer with the other model in the background and log it.

        ``run_other()`` returns (answer text, input tokens, output tokens). Errors are logged, never raised.
        Returns the background future (or None when this call is not sampled, or ``max_shadow_backlog`` shadow
        calls are already waiting or running).
        """
        if self.shadow_rate <= 0 or self._rng.random() >= self.shadow_rate or self._closed:
            return None
        if not self._shadow_slots.acquire(blocking=False):
            with self._shadow_lock:
                self.shadow_skipped += 1
            return None
        try:
            return self._shadow_executor().submit(self._shadow_job, pair_id, messages, answered, run_other)
        except RuntimeError:  # the interpreter is shutting down: no new threads
            self._shadow_slots.release()
            return None

    def _shadow_executor(self) -> ThreadPoolExecutor:
        with self._shadow_lock:
            if self._shadow_pool is None:
                self._shadow_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hybrid-llm-shadow")
            return self._shadow_pool

    def _shadow_job(
        self,
        pair_id: str,
        messages: str | Sequence[Any],
        answered: Answered,
        run_other: Callable[[], tuple[str, int | None, int | None]],
    ) -> None:
        """Run the other model and queue its row (the writer outlives the shadow pool, also at exit)."""
        start = time.perf_counter()
        try:
            text, n_in, n_out = run_other()
            error = None
        except Exception as exc:  # a failed shadow call is data, not a user-facing error
            text, n_in, n_out, error = None, None, None, f"{type(exc).__name__}: {exc}"
        finally:
            self._shadow_slots.release()
        other = answered.other
        row = partial(
            self._row,
            uuid.uuid4().hex,
            time.time(),
            messages,
            other,
            answered.model_names[0 if other == "small" else 1],
            text,
            n_in,
            n_out,
            time.perf_counter() - start,
            kind="shadow",
            pair_id=pair_id,
            route=answered.decision.target,
            score=answered.decision.score,
            threshold=answered.decision.threshold,
            threshold_source=answered.decision.threshold_source,
            error=error,
        )
        self._writer.put_row(row)

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until every queued row is committed (shadow calls in flight are not waited for).

        Raises :class:`RoutingLogWriteError` when rows were lost since the last flush or close, and
        :class:`LogWriterError` when the writer thread has stopped (its queued rows are lost, and counted).
        """
        if not self._closed:
            done = threading.Event()
            self._writer.put_marker(done)
            deadline = None if timeout is None else time.monotonic() + timeout
            while not done.wait(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic()))):
                if not self._writer.alive:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("routing log did not flush in time")
            if not self._writer.alive:
                raise self._writer.error()
        self._raise_dropped()

    def close(self) -> None:
        """Wait for shadow calls, commit everything, stop the writer and close the database.

        Raises :class:`RoutingLogWriteError` when rows were lost since the last flush or close, and
        :class:`LogWriterError` when the writer thread had stopped before it could write them all.
        """
        if self._closed:
            return
        self._closed = True
        if self._shadow_pool is not None:
            self._shadow_pool.shutdown(wait=True)
        self._finalizer.detach()
        self._writer.stop()
        if self._writer.failure is not None:
            raise self._writer.error()
        self._raise_dropped()

    def _raise_dropped(self) -> None:
        n, error = self._writer.take_unreported()
        if n:
            raise RoutingLogWriteError(self.name, n, error)

    def __enter__(self) -> "RoutingLog":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: Any) -> None:
        try:
            self.close()
        except (RoutingLogWriteError, LogWriterError):
            if exc_type is None:  # never hide the error already leaving the block (the loss was warned about)
                raise


def read_calls(path: LogTarget, *, kind: str | None = None) -> Iterator[dict]:
    """Rows of a routing log as dicts, in row-id order (``kind`` = 'answer' or 'shadow' to filter).

    Reads :data:`READ_PAGE` rows per query, so a large log (or one on a database server) is never held in memory.
    """
    conn = open_log(path)
    try:
        sql = "SELECT * FROM calls WHERE id > ?" + (" AND kind = ?" if kind else "") + f" ORDER BY id LIMIT {READ_PAGE}"
        last = 0
        while True:
            cursor = conn.execute(sql, (last, kind) if kind else (last,))
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, row)) for row in cursor.fetchall()]
            yield from rows
            if len(rows) < READ_PAGE:
                return
            last = rows[-1]["id"]
    finally:
        conn.close()
