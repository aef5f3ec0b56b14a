"""Replay a recorded routing-data file as traffic through the real routing path.

Each query goes through ``router.decide`` -> :class:`~hybrid_router.core.fallback.FallbackRunner` ->
:meth:`RoutingLog.log_call <hybrid_router.traffic.routing_log.RoutingLog.log_call>`, and with ``shadow_rate`` the
other model answers too (:meth:`~hybrid_router.traffic.routing_log.RoutingLog.maybe_shadow`), exactly as in the
wrappers and the server. The two "models" answer from the recorded answers (``small_answer`` / ``large_answer``;
:data:`PLACEHOLDER` where the file has none), and :class:`RecordedScorer` grades every logged answer with the
recorded score through :func:`~hybrid_router.traffic.log_scoring.score_log`, so the log ends up scored like any
other: ``hybrid-llm learn`` and ``hybrid-llm report`` read it unchanged.

Shadow sampling draws from the log's own random generator seeded with ``seed``, and the shadow backlog is never
allowed to fill, so the same file, router and seed give the same routes, shadowed calls, answers and scores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.fallback import FallbackRunner
from ..core.options import RoutingOptions
from ..core.router import HybridRouter
from ..traffic.log_scoring import CallGroup, Score, score_log
from ..traffic.routing_log import LogTarget, RoutingLog, log_name
from ..train.data_io import RoutingData, load_routing_data

#: The scorer name under which replayed answers carry their recorded scores.
RECORDED_SCORER = "recorded"
#: The answer a replayed model gives when the data file has no recorded answer for it (never trained on).
PLACEHOLDER = "[replay placeholder: no recorded {target} answer]"


def is_placeholder(answer: str | None) -> bool:
    """True for the placeholder text replay logs when a file has no recorded answer."""
    return bool(answer) and answer.startswith("[replay placeholder:")


class RecordedBackend:
    """A "model" that answers query ``i`` with its recorded answer (or the placeholder)."""

    def __init__(self, target: str, answers: list[str] | None):
        self.target = target
        self.answers = answers

    def answer(self, index: int) -> str:
        if self.answers is None:
            return PLACEHOLDER.format(target=self.target)
        return self.answers[index]


class RecordedScorer:
    """A :class:`~hybrid_router.traffic.log_scoring.Scorer` that returns the recorded score of each logged answer.

    ``index`` maps a call's ``pair_id`` to its row of ``data``; a call of another pair is left unscored.
    """

    name = RECORDED_SCORER

    def __init__(self, data: RoutingData, index: dict[str, int]):
        self.small = data.mean_small()
        self.large = data.mean_large()
        self.metric = data.metric or "score"
        self.index = index

    def score(self, group: CallGroup) -> list[Score]:
        i = self.index.get(group.pair_id)
        if i is None:
            return []
        table = {"small": self.small, "large": self.large}
        return [
            Score(c["call_id"], float(table[c["answered_by"]][i]), f"recorded {self.metric}")
            for c in group.calls
            if c["answered_by"] in table
        ]


@dataclass
class ReplaySummary:
    """What one replay did."""

    calls: int = 0
    small: int = 0
    large: int = 0
    shadowed: int = 0
    scored: int = 0
    placeholders: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self, log: LogTarget) -> str:
        """One printable summary line."""
        note = (
            f"; no recorded {' or '.join(self.placeholders)} answers: placeholders logged" if self.placeholders else ""
        )
        return (
            f"replayed {self.calls} queries into {log_name(log)}: {self.small} small, {self.large} large, "
            f"{self.shadowed} shadowed, {self.scored} answers scored ({RECORDED_SCORER}) in {self.seconds:.1f}s{note}"
        )


def replay_data(
    data: RoutingData,
    log_path: LogTarget,
    router: HybridRouter,
    *,
    shadow_rate: float = 0.0,
    seed: int = 0,
    options: RoutingOptions | None = None,
    source: str = "replay",
) -> ReplaySummary:
    """Replay ``data`` (in order) into the routing log at ``log_path`` (appended to when it exists)."""
    start = time.perf_counter()
    options = options or RoutingOptions()
    backends = {
        "small": RecordedBackend("small", data.small_answers),
        "large": RecordedBackend("large", data.large_answers),
    }
    model_names = (data.small_model or "small", data.large_model or "large")
    runner = FallbackRunner(model_names=model_names)
    summary = ReplaySummary(placeholders=[t for t, b in backends.items() if b.answers is None])
    index: dict[str, int] = {}
    futures = []
    log = RoutingLog(
        log_path, shadow_rate=shadow_rate, seed=seed, source=source, max_shadow_backlog=max(len(data), 1) + 1
    )
    with log:
        for i, query in enumerate(data.queries):
            decision = router.decide(query, options, source)
            answer, answered = runner.run(decision, lambda target, i=i: backends[target].answer(i))
            call_id = log.log_call(query, answered, answer, latency_s=0.0)
            index[call_id] = i
            summary.calls += 1
            summary.small += answered.answered_by == "small"
            summary.large += answered.answered_by == "large"
            other = backends[answered.other]
            future = log.maybe_shadow(call_id, query, answered, lambda i=i, other=other: (other.answer(i), None, None))
            if future is not None:
                futures.append(future)
        summary.shadowed = len(futures)
    result = score_log(log_path, RecordedScorer(data, index))
    summary.scored = result.scored
    summary.seconds = time.perf_counter() - start
    return summary


def replay_file(
    data_path: str | Path,
    log_path: LogTarget,
    *,
    router: HybridRouter | None = None,
    shadow_rate: float = 0.0,
    seed: int = 0,
    skip_bad_rows: bool = False,
) -> ReplaySummary:
    """Load a routing-data file and replay it (default router: the shipped one)."""
    data = load_routing_data(data_path, skip_bad_rows=skip_bad_rows)
    return replay_data(data, log_path, router or HybridRouter.shared_default(), shadow_rate=shadow_rate, seed=seed)
