"""Reading router training data: CSV or JSONL (optionally gzipped) with ``query, small_score, large_score``.

Optional columns: ``query_id`` (rows sharing one are several sampled answers to the same query, used by the
probabilistic labels), ``small_model``, ``large_model``, ``metric``. A row whose score is missing or not a finite
number is an error naming the file and line, unless ``skip_bad_rows`` is set (then it is counted and skipped).

Answer columns (optional): ``small_answer`` (the small model's answer: trains the answer verifier of a cascade) and
``large_answer``. When a file has one, every row needs a non-blank string there (else an error naming file and
line, or a skipped row); rows sharing a ``query_id`` keep the first row's answer.
Files are UTF-8, with or without a byte-order mark. Everything else wrong with a file (not UTF-8, a bad or truncated
gzip stream, malformed CSV or JSON, one ``query_id`` used for two different queries or model pairs) is a
:class:`DataError` naming the file and, where there is one, the line.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

REQUIRED_COLUMNS = ("query", "small_score", "large_score")


class DataError(ValueError):
    """Malformed routing data (names the file and line)."""


@dataclass
class RoutingData:
    """Routing examples grouped by query: one entry per query, with all sampled scores of each model."""

    query_ids: list[str]
    queries: list[str]
    small_scores: list[np.ndarray]
    large_scores: list[np.ndarray]
    metric: str | None = None
    small_model: str | None = None
    large_model: str | None = None
    skipped_rows: int = 0
    source: str = ""
    extra: dict = field(default_factory=dict)
    #: the small / large model's answer per query (first row of each query_id), when the file has the column
    small_answers: list[str] | None = None
    large_answers: list[str] | None = None

    def __len__(self) -> int:
        return len(self.queries)

    def mean_small(self) -> np.ndarray:
        """Mean small-model score per query."""
        return np.array([s.mean() for s in self.small_scores], dtype=np.float64)

    def mean_large(self) -> np.ndarray:
        """Mean large-model score per query."""
        return np.array([s.mean() for s in self.large_scores], dtype=np.float64)

    def subset(self, index: np.ndarray | list[int]) -> "RoutingData":
        """The queries at ``index`` (e.g. one side of a split)."""
        idx = [int(i) for i in index]
        return RoutingData(
            query_ids=[self.query_ids[i] for i in idx],
            queries=[self.queries[i] for i in idx],
            small_scores=[self.small_scores[i] for i in idx],
            large_scores=[self.large_scores[i] for i in idx],
            metric=self.metric,
            small_model=self.small_model,
            large_model=self.large_model,
            source=self.source,
            small_answers=None if self.small_answers is None else [self.small_answers[i] for i in idx],
            large_answers=None if self.large_answers is None else [self.large_answers[i] for i in idx],
        )

    def split_indices(self, fraction: float, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The row indices of :meth:`split`'s two sides."""
        order = np.random.default_rng(seed).permutation(len(self))
        cut = int(round(len(self) * fraction))
        return order[:cut], order[cut:]

    def split(self, fraction: float, *, seed: int = 0) -> tuple["RoutingData", "RoutingData"]:
        """A fixed-seed split by query: (first ``fraction`` of a permutation, the rest)."""
        first, rest = self.split_indices(fraction, seed=seed)
        return self.subset(first), self.subset(rest)


_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


class _Lines:
    """The file's lines as text (line endings kept): UTF-8, a leading byte-order mark dropped, ``.gz`` unpacked.

    Lines are decoded one by one, so a decoding error names its exact line; ``line_no`` is the last line read.
    """

    def __init__(self, path: Path):
        self.path = path
        self.line_no = 0

    def __iter__(self) -> Iterator[str]:
        opener = gzip.open if self.path.suffix == ".gz" else open
        with opener(self.path, "rb") as handle:
            for raw in handle:
                self.line_no += 1
                yield self._decode(raw)

    def _decode(self, raw: bytes) -> str:
        if self.line_no == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            hint = " (it looks like UTF-16)" if self.line_no == 1 and raw.startswith(_UTF16_BOMS) else ""
            raise DataError(
                f"{self.path}:{self.line_no}: not UTF-8 text{hint} ({exc.reason} at column {exc.start + 1}); "
                "save the file as UTF-8"
            ) from exc


def _json_rows(path: Path, lines: _Lines) -> Iterator[tuple[int, dict]]:
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from exc
        except RecursionError as exc:
            raise DataError(f"{path}:{line_no}: invalid JSON (nested too deeply)") from exc
        if not isinstance(row, dict):
            raise DataError(f"{path}:{line_no}: expected a JSON object per line")
        yield line_no, row


def _csv_rows(path: Path, lines: _Lines) -> Iterator[tuple[int, dict]]:
    reader = csv.DictReader(lines)
    try:
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; need {', '.join(REQUIRED_COLUMNS)}")
        for row in reader:
            yield reader.line_num, row
    except csv.Error as exc:
        raise DataError(f"{path}:{lines.line_no}: malformed CSV ({exc})") from exc


def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, row)`` pairs; every problem with the file itself is a :class:`DataError` naming it."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if name.endswith((".jsonl", ".json")):
        parse = _json_rows
    elif name.endswith(".csv"):
        parse = _csv_rows
    else:
        raise DataError(f"{path}: unsupported file type; use .csv or .jsonl (optionally .gz)")
    try:
        yield from parse(path, _Lines(path))
    except _GZIP_ERRORS as exc:
        raise DataError(f"{path}: not a valid gzip file, or a truncated one ({exc or type(exc).__name__})") from exc


def _score(value: object) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("missing")
    if isinstance(value, bool):
        raise ValueError("not a number")
    number = float(value)  # raises ValueError / TypeError on non-numbers, OverflowError on huge integers
    if not math.isfinite(number):
        raise ValueError("not finite")
    return number


def _check_same_query(path: Path, line_no: int, qid: str, group: dict, row: dict) -> None:
    """Rows sharing a ``query_id`` must be samples of one query by one pair of models (else a DataError)."""
    for key in ("query", "small_model", "large_model"):
        value = row.get(key) or None
        if value is None:
            continue
        first = group.setdefault(key, value)
        if first != value:
            raise DataError(
                f"{path}:{line_no}: query_id {qid!r} is used for a different {key} than on line {group['line']} "
                f"({_short(first)} vs {_short(value)}); give each query (and model pair) its own query_id"
            )


def _short(value: object, limit: int = 40) -> str:
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")


ANSWER_COLUMNS = ("small_answer", "large_answer")


def _answers(row: dict, columns: tuple[str, ...]) -> dict[str, str]:
    """The row's answers in ``columns``; ValueError for a missing, blank or non-string answer."""
    out = {}
    for column in columns:
        value = row.get(column)
        if not isinstance(value, str):
            raise ValueError(f"{column} is {'missing' if value is None else 'not a string'}")
        if not value.strip():
            raise ValueError(f"{column} is blank")
        out[column] = value
    return out


def load_routing_data(path: str | Path, *, skip_bad_rows: bool = False) -> RoutingData:
    """Load a CSV/JSONL routing file; rows with the same ``query_id`` are samples of one query."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"routing data file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file")
    groups: dict[str, dict] = {}
    skipped = 0
    meta: dict[str, set] = {"metric": set(), "small_model": set(), "large_model": set()}
    answer_columns: tuple[str, ...] | None = None  # decided by the first row (a CSV header names them all)
    for line_no, row in _rows(path):
        query = row.get("query")
        if answer_columns is None:
            answer_columns = tuple(c for c in ANSWER_COLUMNS if c in row)
        try:
            if not isinstance(query, str) or not query.strip():
                raise ValueError("query is empty")
            small = _score(row.get("small_score"))
            large = _score(row.get("large_score"))
            answers = _answers(row, answer_columns)
        except (ValueError, TypeError, OverflowError) as exc:
            if skip_bad_rows:
                skipped += 1
                continue
            raise DataError(
                f"{path}:{line_no}: bad row ({exc}): small_score={_short(row.get('small_score'))}, "
                f"large_score={_short(row.get('large_score'))}; fix it or pass --skip-bad-rows"
            ) from exc
        qid = str(row.get("query_id") or query)
        group = groups.setdefault(qid, {"line": line_no, "small": [], "large": [], **answers})
        _check_same_query(path, line_no, qid, group, row)
        group["small"].append(small)
        group["large"].append(large)
        for key in meta:
            if row.get(key):
                meta[key].add(str(row[key]))
    if not groups:
        raise DataError(f"{path}: no usable rows" + (f" ({skipped} bad rows skipped)" if skipped else ""))

    def single(key: str) -> str | None:
        return next(iter(meta[key])) if len(meta[key]) == 1 else None

    return RoutingData(
        query_ids=list(groups),
        queries=[g["query"] for g in groups.values()],
        small_scores=[np.asarray(g["small"], dtype=np.float64) for g in groups.values()],
        large_scores=[np.asarray(g["large"], dtype=np.float64) for g in groups.values()],
        metric=single("metric"),
        small_model=single("small_model"),
        large_model=single("large_model"),
        skipped_rows=skipped,
        source=str(path),
        small_answers=[g["small_answer"] for g in groups.values()] if "small_answer" in answer_columns else None,
        large_answers=[g["large_answer"] for g in groups.values()] if "large_answer" in answer_columns else None,
    )
