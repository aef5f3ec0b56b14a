"""Turning a scored routing log into training data.

- :func:`export_pairs`: one router-training row per pair whose small and large answers were both graded, in the
  format of :mod:`hybrid_router.data_io` (``query_id, query, small_model, small_score, large_model, large_score,
  source, metric``), so ``hybrid-llm train`` retrains the router on real traffic. ``query_id`` is derived from the
  conversation, so repeated queries become several samples of one query (used by the ``prob`` labels).
- :func:`export_sft`: rejection sampling for distillation: the large model's answers graded at least
  ``min_score``, as chat-messages JSONL (``{"messages": [{"role", "content"}, ...]}``, the conversational format
  transformers chat templates and TRL's SFT trainer read). :func:`read_sft_jsonl` reads and validates it.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from .log_scoring import SCORER_METRICS, call_groups, scorer_names, scores_by_call
from .routing_log import LogTarget, log_name

PAIR_COLUMNS = ("query_id", "query", "small_model", "small_score", "large_model", "large_score", "source", "metric")
#: Written after :data:`PAIR_COLUMNS` when every pair has both answers' text (logs kept with ``store_text=True``):
#: what the answer verifier of a cascade trains on.
ANSWER_COLUMNS = ("small_answer", "large_answer")
SFT_ROLES = ("system", "user", "assistant", "tool")


def resolve_scorer(path: LogTarget, scorer: str | None) -> str:
    """``scorer`` if the log has rows of it; without one, the log's only scorer (ValueError when ambiguous)."""
    names = scorer_names(path)
    if scorer is None:
        if len(names) != 1:
            raise ValueError(
                f"{log_name(path)}: "
                + (
                    f"several scorers ({', '.join(names)}); pick one with --scorer"
                    if names
                    else "no scores yet; run hybrid-llm score-log first"
                )
            )
        return names[0]
    if scorer not in names:
        raise ValueError(
            f"{log_name(path)}: no scores from {scorer!r} (scorers in the log: {', '.join(names) or 'none'})"
        )
    return scorer


@dataclass
class ScoredPair:
    """One logged query with both models' graded answers."""

    query_id: str
    query: str
    small: dict
    large: dict
    small_score: float
    large_score: float


def scored_pairs(path: LogTarget, scorer: str) -> list[ScoredPair]:
    """The pairs of the log where the small and the large answer both have a (successful) score from ``scorer``."""
    scores = scores_by_call(path, scorer)
    out = []
    for group in call_groups(path):
        small, large = group.by("small"), group.by("large")
        if small is None or large is None or small["call_id"] not in scores or large["call_id"] not in scores:
            continue
        out.append(
            ScoredPair(
                small["conversation_sha256"][:16],
                group.query,
                small,
                large,
                scores[small["call_id"]],
                scores[large["call_id"]],
            )
        )
    return out


def export_pairs(path: LogTarget, out: str | Path, *, scorer: str | None = None) -> int:
    """Write the scored pairs as router-training CSV; returns the number of rows (ValueError when none).

    With both answers' text in every pair, the ``small_answer`` and ``large_answer`` columns are written too, so
    ``hybrid-llm train`` on the file also trains the answer verifier.
    """
    name = resolve_scorer(path, scorer)
    pairs = scored_pairs(path, name)
    if not pairs:
        raise ValueError(
            f"{log_name(path)}: no pair has both answers scored by {name!r} (log calls with a shadow_rate > 0)"
        )
    with_answers = all(_has_text(p.small.get("answer")) and _has_text(p.large.get("answer")) for p in pairs)
    with open(out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PAIR_COLUMNS + (ANSWER_COLUMNS if with_answers else ()))
        for p in pairs:
            writer.writerow(
                [
                    p.query_id,
                    p.query,
                    p.small["model"] or "small",
                    repr(float(p.small_score)),
                    p.large["model"] or "large",
                    repr(float(p.large_score)),
                    f"routing-log/{p.small['source'] or 'unknown'}",
                    SCORER_METRICS.get(name, name),
                    *((p.small["answer"], p.large["answer"]) if with_answers else ()),
                ]
            )
    return len(pairs)


def _has_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def sft_messages(conversation: list[list[str]], answer: str) -> list[dict]:
    """A logged conversation (``[[role, text], ...]``) plus the answer as a chat-messages list."""
    return [{"role": role, "content": text} for role, text in conversation] + [{"role": "assistant", "content": answer}]


def export_sft(path: LogTarget, out: str | Path, *, min_score: float, scorer: str | None = None) -> int:
    """Write the large model's answers scored ``>= min_score`` as chat-messages JSONL; returns the number kept.

    Identical (conversation, answer) pairs are written once.
    """
    name = resolve_scorer(path, scorer)
    scores = scores_by_call(path, name)
    seen: set[tuple[str, str]] = set()
    kept = 0
    with open(out, "w", encoding="utf-8") as handle:
        for group in call_groups(path):
            for call in group.calls:
                score = scores.get(call["call_id"])
                key = (call["conversation_sha256"], call["answer"])
                if call["answered_by"] != "large" or score is None or score < min_score or key in seen:
                    continue
                seen.add(key)
                record = {
                    "messages": sft_messages(group.conversation, call["answer"]),
                    "metadata": {"call_id": call["call_id"], "model": call["model"], "scorer": name, "score": score},
                }
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                kept += 1
    return kept


def read_sft_jsonl(path: str | Path) -> list[list[dict]]:
    """The conversations of a chat-messages JSONL file; ValueError naming the line for a malformed record.

    Each record needs ``messages``: a list of ``{"role", "content"}`` (roles system/user/assistant/tool, string
    content) with at least one assistant message.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SFT data not found: {path}")
    conversations = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from exc
            messages = record.get("messages") if isinstance(record, dict) else None
            if not isinstance(messages, list) or not messages:
                raise ValueError(f"{path}:{line_no}: expected an object with a non-empty 'messages' list")
            for m in messages:
                if not isinstance(m, dict) or m.get("role") not in SFT_ROLES or not isinstance(m.get("content"), str):
                    raise ValueError(f"{path}:{line_no}: each message needs a role in {SFT_ROLES} and string content")
            if not any(m["role"] == "assistant" for m in messages):
                raise ValueError(f"{path}:{line_no}: no assistant message to learn from")
            conversations.append([{"role": m["role"], "content": m["content"]} for m in messages])
    if not conversations:
        raise ValueError(f"{path}: no examples")
    return conversations
