"""The routing log on PostgreSQL: ``RoutingLog("postgresql://user@host:port/db")``.

The URL is a SQLAlchemy URL (``postgresql://`` and ``postgres://`` use psycopg 3, ``postgresql+psycopg://`` and
``postgresql+psycopg2://`` name the driver); ``pip install 'hybrid-llm[postgres]'`` installs SQLAlchemy and psycopg,
which are imported only when a URL is opened. The tables are the SQLite log's (``REAL`` widened to ``DOUBLE
PRECISION``, the row id a ``BIGSERIAL``), created with ``CREATE TABLE IF NOT EXISTS`` under a transaction-scoped
advisory lock, so any number of processes may open one log at once. A database that already has a ``calls`` or
``scores`` table without the log's columns is refused and left unchanged.

:class:`PostgresConnection` gives the log's writer and readers the small part of ``sqlite3.Connection`` they use
(``execute`` and ``executemany`` with ``?`` placeholders, ``with conn:`` for one transaction, ``close``), so one
code path serves both databases. Driver errors become :class:`~hybrid_router.traffic.routing_log.LogDatabaseError`
(messages never hold the password); a connection the server dropped is replaced at the next statement, so the
writer thread of a long-running server survives a database restart (the batch in flight is retried row by row on
a new connection; rows that still cannot be written are counted as dropped).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from ..core.redact import redact
from .routing_log import COLUMNS, SCORE_COLUMNS, LogDatabaseError, LogFileError, mask_url

#: The routing log's tables in PostgreSQL (the SQLite schema, same columns; see the module docstring).
PG_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS calls (
        id BIGSERIAL PRIMARY KEY,
        call_id TEXT UNIQUE NOT NULL,
        pair_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        source TEXT,
        conversation TEXT,
        conversation_sha256 TEXT NOT NULL,
        query TEXT,
        route TEXT, answered_by TEXT NOT NULL, model TEXT,
        score DOUBLE PRECISION, threshold DOUBLE PRECISION, threshold_source TEXT,
        answer TEXT,
        input_tokens BIGINT, output_tokens BIGINT, cost DOUBLE PRECISION, latency_s DOUBLE PRECISION,
        fallback INTEGER NOT NULL DEFAULT 0, fallback_reason TEXT, error TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS calls_pair ON calls(pair_id)",
    """CREATE TABLE IF NOT EXISTS scores (
        call_id TEXT NOT NULL, scorer TEXT NOT NULL, score DOUBLE PRECISION, raw TEXT, error TEXT,
        created DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (call_id, scorer)
    )""",
)
#: The advisory lock that serialises schema creation between processes (any constant; "hybridlg" in ASCII).
SCHEMA_LOCK = 0x687962726964_6C67
#: Seconds to wait for the server when the URL sets no ``connect_timeout``.
CONNECT_TIMEOUT = 10
INSTALL_HINT = "pip install 'hybrid-llm[postgres]'"


def _reason(exc: BaseException) -> str:
    """A one-line, redacted description of a driver or SQLAlchemy error (its underlying driver error if any)."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return redact(f"{type(orig).__name__}: {lines[0] if lines else 'no message'}")


def _clean(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL characters: they are stored as U+FFFD (SQLite keeps them)."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) and "\x00" in value else value


def engine_for(url: str) -> Any:
    """A SQLAlchemy engine (no pool) for a PostgreSQL URL; :class:`LogFileError` with a clear, masked message."""
    name = mask_url(url)
    try:
        import sqlalchemy
        from sqlalchemy.engine import make_url
        from sqlalchemy.pool import NullPool
    except ImportError:
        raise LogFileError(
            f"{name}: a routing log on PostgreSQL needs SQLAlchemy and psycopg: {INSTALL_HINT}"
        ) from None
    try:
        parsed = make_url(url)
    except Exception as exc:  # ArgumentError, ValueError (a bad port): the message may quote the URL, so mask it
        raise LogFileError(f"{name}: not a valid database URL ({mask_url(redact(exc))})") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() != "postgresql":
        raise LogFileError(
            f"{name}: unsupported database {parsed.get_backend_name()!r}; a routing log is a SQLite file path or a "
            "postgresql:// URL"
        )
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": CONNECT_TIMEOUT}
    try:
        return sqlalchemy.create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
    except ImportError as exc:
        raise LogFileError(
            f"{name}: the PostgreSQL driver {parsed.get_driver_name()!r} is not installed ({exc}): {INSTALL_HINT}"
        ) from None
    except Exception as exc:  # NoSuchModuleError (an unknown driver name), bad options
        raise LogFileError(f"{name}: cannot use this database URL ({_reason(exc)})") from None


class PostgresConnection:
    """One connection to a PostgreSQL routing log with the ``sqlite3.Connection`` subset the log uses.

    Statements run in autocommit mode; ``with conn:`` wraps its statements in one transaction (commit, or rollback
    on an exception), as ``sqlite3`` does. ``?`` placeholders are rewritten for the driver, so the log's SQL must
    contain no literal ``?`` or ``%``.
    """

    def __init__(self, url: str):
        self.name = mask_url(url)
        self._engine = engine_for(url)
        self._dbapi = self._engine.dialect.loaded_dbapi
        self._raw: Any = None
        self._ensure()

    # ------------------------------------------------------------ connection
    def _ensure(self) -> Any:
        if self._raw is None:
            try:
                raw = self._engine.raw_connection()
            except Exception as exc:
                raise LogDatabaseError(self.name, f"cannot connect to PostgreSQL ({_reason(exc)})") from exc
            raw.driver_connection.autocommit = True
            self._raw = raw
        return self._raw

    def _failed(self, exc: BaseException) -> LogDatabaseError:
        """The error to raise for a failed statement; forgets a connection the server closed (reconnect next)."""
        if self._raw is not None and getattr(self._raw.driver_connection, "closed", False):
            self._discard()
        return LogDatabaseError(self.name, _reason(exc))

    def _discard(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            try:
                raw.invalidate()
            except Exception:  # already gone
                pass

    # ------------------------------------------------------------ the sqlite3 subset
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; returns the driver's cursor (``fetchall``, ``fetchone``, ``description``)."""
        cursor = self._ensure().cursor()
        try:
            cursor.execute(sql.replace("?", "%s"), tuple(_clean(v) for v in params) if params else None)
        except self._dbapi.Error as exc:
            raise self._failed(exc) from exc
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for each row (pipelined by psycopg)."""
        cursor = self._ensure().cursor()
        try:
            cursor.executemany(sql.replace("?", "%s"), [tuple(_clean(v) for v in row) for row in rows])
        except self._dbapi.Error as exc:
            raise self._failed(exc) from exc
        finally:
            cursor.close()

    def __enter__(self) -> "PostgresConnection":
        self.execute("BEGIN")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: Any) -> None:
        if exc_type is None:
            self.execute("COMMIT")
        elif self._raw is not None:  # the connection is still there: undo the transaction, keep the first error
            try:
                self.execute("ROLLBACK")
            except LogDatabaseError:
                self._discard()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        raw, self._raw = self._raw, None
        if raw is not None:
            try:
                raw.close()
            except Exception:  # the server already closed it
                pass
        self._engine.dispose()


def _check_tables(conn: PostgresConnection, *, new_ok: bool) -> None:
    """A :class:`LogFileError` unless the database's current schema holds the log's tables (or neither table)."""
    have: dict[str, set[str]] = {}
    rows = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name IN ('calls', 'scores')"
    ).fetchall()
    for table, column in rows:
        have.setdefault(table, set()).add(column)
    if not have:
        if new_ok:
            return
        raise LogFileError(f"{conn.name}: no routing log in this database (no 'calls' table); write one first")
    for table, columns in (("calls", COLUMNS), ("scores", SCORE_COLUMNS)):
        missing = set(columns) - have.get(table, set())
        if missing:
            raise LogFileError(
                f"{conn.name}: the database has a {table!r} table that is not a routing log's (missing column(s) "
                f"{', '.join(sorted(missing))}); it was left unchanged"
            )


def open_postgres(url: str, *, create: bool) -> PostgresConnection:
    """Connect to the log at ``url``; ``create``: make its tables when absent (race-free between processes)."""
    conn = PostgresConnection(url)
    try:
        if create:
            with conn:
                conn.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))
                _check_tables(conn, new_ok=True)
                for statement in PG_SCHEMA:
                    conn.execute(statement)
        else:
            _check_tables(conn, new_ok=False)
    except BaseException:
        conn.close()
        raise
    return conn
