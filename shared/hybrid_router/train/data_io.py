"""Reading router training data: CSV or JSONL (optionally gzipped) with ``query, small_score, large_score``.

Optional columns: ``query_id`` (rows sharing one are several sampled answers to the same query, used by the
probabilistic labels), ``small_model``, ``large_model``, ``metric``. A row whose score is missing or not a finite
number is an error naming the file and line, unless ``skip_bad_rows`` is set (then it is counted and skipped).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
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


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    with _open_text(path) as handle:
        if name.endswith(".jsonl") or name.endswith(".json"):
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from exc
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{line_no}: expected a JSON object per line")
                yield line_no, row
        elif name.endswith(".csv"):
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: missing column(s) {', '.join(missing)}; need {', '.join(REQUIRED_COLUMNS)}")
            for row in reader:
                yield reader.line_num, row
        else:
            raise DataError(f"{path}: unsupported file type; use .csv or .jsonl (optionally .gz)")


def _score(value: object) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("missing")
    number = float(value)  # raises ValueError / TypeError on non-numbers
    if not math.isfinite(number):
        raise ValueError("not finite")
    return number


def load_routing_data(path: str | Path, *, skip_bad_rows: bool = False) -> RoutingData:
    """Load a CSV/JSONL routing file; rows with the same ``query_id`` are samples of one query."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"routing data file not found: {path}")
    groups: dict[str, dict] = {}
    skipped = 0
    meta: dict[str, set] = {"metric": set(), "small_model": set(), "large_model": set()}
    for line_no, row in _rows(path):
        query = row.get("query")
        try:
            if not isinstance(query, str) or not query.strip():
                raise ValueError("query is empty")
            small = _score(row.get("small_score"))
            large = _score(row.get("large_score"))
        except (ValueError, TypeError) as exc:
            if skip_bad_rows:
                skipped += 1
                continue
            raise DataError(
                f"{path}:{line_no}: bad row ({exc}): small_score={row.get('small_score')!r}, "
                f"large_score={row.get('large_score')!r}; fix it or pass --skip-bad-rows"
            ) from exc
        qid = str(row.get("query_id") or query)
        group = groups.setdefault(qid, {"query": query, "small": [], "large": []})
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
    )
