"""The routing log: one SQLite row per routed call (and per shadow answer), written off the request path.

Both wrappers accept a :class:`RoutingLog`. ``log_call`` only puts a record on a queue (microseconds); a
background thread writes batches in transactions to SQLite in WAL mode, so a killed process loses at most the
rows not yet committed and never corrupts the file. Only conversation text, answers and routing metadata are
stored — never request kwargs, headers or API keys. With ``store_text=False`` the conversation and answer are
replaced by a SHA-256 of the conversation (privacy mode; such rows cannot be scored or exported).

With ``shadow_rate=p`` a fraction ``p`` of calls also gets an answer from the model *not* chosen, in a background
thread (never delaying the user's answer); it is logged as a ``shadow`` row sharing the call's ``pair_id``, so the
log holds pairs of answers for the same query — teacher data for retraining the router and distilling the small
model (``hybrid-llm score-log``, ``export-pairs``, ``export-sft``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import random
import sqlite3
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..core.answered import Answered
from ..core.conversation import message_role_and_text, router_text
from ..core.pricing import PriceTable

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
_STOP = object()
logger = logging.getLogger(__name__)


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (and create) a routing log database in WAL mode."""
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


def conversation_pairs(messages: str | Sequence[Any]) -> list[list[str]]:
    """A conversation as ``[[role, text], ...]`` (a plain string is one user turn)."""
    if isinstance(messages, str):
        return [["user", messages]]
    return [list(message_role_and_text(m)) for m in messages]


class RoutingLog:
    """Append-only SQLite log of routed calls; thread-safe, non-blocking writes, optional shadow answers."""

    def __init__(
        self,
        path: str | Path,
        *,
        store_text: bool = True,
        shadow_rate: float = 0.0,
        prices: PriceTable | dict | None = None,
        source: str | None = None,
        seed: int | None = None,
    ):
        if not 0.0 <= float(shadow_rate) <= 1.0:
            raise ValueError(f"shadow_rate must be in [0, 1], got {shadow_rate!r}")
        self.path = Path(path)
        self.store_text = store_text
        self.shadow_rate = float(shadow_rate)
        self.prices = prices if isinstance(prices, PriceTable) else PriceTable(prices)
        self.source = source
        self._rng = random.Random(seed)
        self._queue: queue.Queue = queue.Queue()
        self._conn = connect(self.path)
        self._writer = threading.Thread(target=self._write_loop, name="hybrid-llm-log", daemon=True)
        self._writer.start()
        self._shadow_pool: ThreadPoolExecutor | None = None
        self._closed = False

    # ------------------------------------------------------------ writing
    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = []
            for b in batch:
                if isinstance(b, (dict, partial)):
                    try:
                        rows.append(b if isinstance(b, dict) else b())
                    except Exception:  # a row that cannot be built is reported, never raised at a caller
                        logger.exception("routing log: could not build a row")
            if rows:
                try:
                    with self._conn:  # one transaction per batch
                        self._conn.executemany(
                            f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})",
                            [tuple(r.get(c) for c in COLUMNS) for r in rows],
                        )
                except sqlite3.Error:  # a broken batch must not stop logging (nor any caller)
                    logger.exception("routing log: could not write %d rows to %s", len(rows), self.path)
            for b in batch:
                if isinstance(b, threading.Event):
                    b.set()
                self._queue.task_done()
            if any(b is _STOP for b in batch):
                return

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
        convo_json = json.dumps(pairs, ensure_ascii=False)
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
    ) -> str:
        """Queue one routed call; returns its ``call_id`` (also the ``pair_id`` of a shadow answer).

        Only a reference to the inputs is queued here; the row is built and written by the writer thread.
        """
        call_id = uuid.uuid4().hex
        messages = messages if isinstance(messages, str) else list(messages)
        meta = answered.metadata()
        extra = {"source": source} if source else {}
        self._queue.put(
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
        Returns the background future (or None when this call is not sampled).
        """
        if self.shadow_rate <= 0 or self._rng.random() >= self.shadow_rate or self._closed:
            return None
        other = answered.other
        model = answered.model_names[0 if other == "small" else 1]
        if self._shadow_pool is None:
            self._shadow_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hybrid-llm-shadow")

        def job() -> None:
            start = time.perf_counter()
            try:
                text, n_in, n_out = run_other()
                error = None
            except Exception as exc:  # a failed shadow call is data, not a user-facing error
                text, n_in, n_out, error = None, None, None, f"{type(exc).__name__}: {exc}"
            row = self._row(
                uuid.uuid4().hex,
                time.time(),
                messages,
                other,
                model,
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
            self._queue.put(row)

        return self._shadow_pool.submit(job)

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until every queued row is committed (shadow calls in flight are not waited for)."""
        done = threading.Event()
        self._queue.put(done)
        if not done.wait(timeout):
            raise TimeoutError("routing log did not flush in time")

    def close(self) -> None:
        """Wait for shadow calls, commit everything, stop the writer and close the database."""
        if self._closed:
            return
        self._closed = True
        if self._shadow_pool is not None:
            self._shadow_pool.shutdown(wait=True)
        self._queue.put(_STOP)
        self._writer.join()
        self._conn.close()

    def __enter__(self) -> "RoutingLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_calls(path: str | Path, *, kind: str | None = None) -> Iterator[dict]:
    """Rows of a routing log as dicts (``kind`` = 'answer' or 'shadow' to filter)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"routing log not found: {path}")
    conn = connect(path)
    conn.row_factory = sqlite3.Row
    try:
        sql = "SELECT * FROM calls" + (" WHERE kind = ?" if kind else "") + " ORDER BY id"
        for row in conn.execute(sql, (kind,) if kind else ()):
            yield dict(row)
    finally:
        conn.close()
