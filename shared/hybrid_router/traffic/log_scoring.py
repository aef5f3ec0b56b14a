"""Grading the answers in a routing log, with pluggable scorers; results go to the log's ``scores`` table.

A logged call and its shadow answer share a ``pair_id``: a :class:`CallGroup` holds the scorable calls of one
pair (text stored, an answer, no error). A scorer grades the calls of a group and returns one :class:`Score` per
call it could grade:

- :class:`MatchScorer` (``match``, metric ``correct01``): 1.0 when the answer matches a reference answer for the
  query (numeric final answer when the reference is a number or ends in ``#### N``, GSM8K style; otherwise exact
  match after normalising case, spaces and punctuation). References come from a CSV/JSONL of ``query, reference``.
- :class:`EmbedScorer` (``embed``, metric ``similarity``): cosine similarity of the small model's answer to the
  large model's answer with the router's encoder (MiniLM); the large answer scores 1.0 by definition.
- :class:`JudgeScorer` (``judge``, metric ``judge1to10``; or ``judge-pairwise``, metric ``pairwise_prob``): an
  LLM judge with the MT-Bench prompts (:data:`SINGLE_PROMPT`, :data:`PAIRWISE_PROMPT`). A judge output that does not
  follow the verdict format is stored as an error with the raw output, never guessed.

:func:`score_log` skips calls that already have a row for the scorer (``retry_errors=True`` re-grades the rows
that failed) and commits after every group, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import csv
import json
import math
import re
import string
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from .routing_log import LogTarget, open_log, read_calls

#: The metric written by ``export-pairs`` for each scorer name (how the two scores are to be read).
SCORER_METRICS = {"match": "correct01", "embed": "similarity", "judge": "judge1to10", "judge-pairwise": "pairwise_prob"}


@dataclass
class Score:
    """The grade of one logged call: ``score`` or ``error`` (then ``score`` is None); ``raw`` is what was parsed."""

    call_id: str
    score: float | None
    raw: str | None = None
    error: str | None = None


@dataclass
class CallGroup:
    """The scorable calls of one ``pair_id`` (the user's answer and, when sampled, the other model's)."""

    pair_id: str
    conversation: list[list[str]]
    query: str
    calls: list[dict] = field(default_factory=list)

    def by(self, answered_by: str) -> dict | None:
        """The call answered by ``"small"`` or ``"large"`` (None when the group has none)."""
        return next((c for c in self.calls if c["answered_by"] == answered_by), None)

    @property
    def question(self) -> str:
        """The text of the latest user turn (the query itself for a one-turn conversation)."""
        users = [text for role, text in self.conversation if role == "user" and text]
        return users[-1] if users else self.query


class Scorer(Protocol):
    """Grades the calls of a group; returns a :class:`Score` for each call it could grade (maybe none)."""

    name: str

    def score(self, group: CallGroup) -> list[Score]: ...


def _scorable(row: dict) -> bool:
    return row.get("query") is not None and row.get("answer") is not None and not row.get("error")


def call_groups(path: LogTarget) -> Iterator[CallGroup]:
    """The log's calls grouped by ``pair_id``, in log order; calls without stored text or answer are left out."""
    groups: dict[str, CallGroup] = {}
    for row in read_calls(path):
        if not _scorable(row):
            continue
        group = groups.get(row["pair_id"])
        if group is None:
            group = groups[row["pair_id"]] = CallGroup(row["pair_id"], json.loads(row["conversation"]), row["query"])
        group.calls.append(row)
    yield from groups.values()


# ----------------------------------------------------------------------------------------------- reference match
_FINAL_MARKERS = (re.compile(r"####\s*(.+)"), re.compile(r"answer is\s*[:\-]?\s*(.+)", re.IGNORECASE))
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


def _to_number(text: str) -> float | None:
    match = _NUMBER.search(text)
    if not match:
        return None
    try:
        return float(match.group(0).replace("$", "").replace(",", ""))
    except ValueError:
        return None


def final_number(text: str) -> float | None:
    """The final numeric answer of a text: after ``####`` or "the answer is", else the last number in it."""
    for marker in _FINAL_MARKERS:
        found = marker.findall(text)
        if found:
            number = _to_number(found[-1])
            if number is not None:
                return number
    numbers = _NUMBER.findall(text)
    return _to_number(numbers[-1]) if numbers else None


def normalize_text(text: str) -> str:
    """Lower case, punctuation removed, spaces collapsed (for exact-match comparison)."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(text.split())


def _is_numeric_reference(reference: str) -> bool:
    return "####" in reference or _NUMBER.fullmatch(reference.strip()) is not None


def match_answer(answer: str, reference: str) -> tuple[float, str]:
    """(1.0 or 0.0, what was compared): numeric final-answer match for numeric references, else exact match."""
    if _is_numeric_reference(reference):
        want, got = final_number(reference), final_number(answer)
        ok = got is not None and want is not None and math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-6)
        return float(ok), f"answer={got!r} reference={want!r}"
    ok = normalize_text(answer) == normalize_text(reference)
    return float(ok), f"exact match of {normalize_text(answer)[:80]!r}"


def _key(question: str) -> str:
    return " ".join(question.split())


def load_references(path: str | Path) -> dict[str, str]:
    """``query -> reference`` from a CSV (columns ``query, reference``) or JSONL (objects with those keys)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"references file not found: {path}")
    refs: dict[str, str] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        if path.suffix == ".csv":
            reader = csv.DictReader(handle)
            missing = {"query", "reference"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}; need query, reference")
            rows: Iterator[tuple[int, Any]] = ((reader.line_num, r) for r in reader)
        elif path.suffix in (".jsonl", ".json"):
            rows = ((n, json.loads(line)) for n, line in enumerate(handle, start=1) if line.strip())
        else:
            raise ValueError(f"{path}: references must be .csv or .jsonl")
        for line_no, row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("query"), str) or row.get("reference") is None:
                raise ValueError(f"{path}:{line_no}: need a 'query' string and a 'reference'")
            refs[_key(row["query"])] = str(row["reference"])
    return refs


class MatchScorer:
    """Reference-based grading (exact match, or numeric final-answer match); calls without a reference are left
    unscored."""

    name = "match"

    def __init__(self, references: dict[str, str]):
        self.references = {_key(q): r for q, r in references.items()}

    def score(self, group: CallGroup) -> list[Score]:
        reference = self.references.get(_key(group.question)) or self.references.get(_key(group.query))
        if reference is None:
            return []
        out = []
        for call in group.calls:
            value, raw = match_answer(call["answer"], reference)
            out.append(Score(call["call_id"], value, raw))
        return out


# ----------------------------------------------------------------------------------------------- embedding
class EmbedScorer:
    """Cosine similarity of the small answer to the large answer (the large answer scores 1.0)."""

    name = "embed"

    def __init__(self, encoder: Any = None):
        if encoder is None:
            from ..core.encoder import Encoder

            encoder = Encoder()
        self.encoder = encoder
        self._prepared: dict[str, Any] = {}

    def prepare(self, groups: list[CallGroup]) -> None:
        """Embed the answer pairs of ``groups`` as one job (``encode_many``: an encoder on a batch engine starts its
        workers once); each pair is still its own batch, so :meth:`score` gives the same numbers either way."""
        if not hasattr(self.encoder, "encode_many"):
            return
        pairs = [(g.pair_id, g.by("small"), g.by("large")) for g in groups]
        pairs = [(pair_id, s, l) for pair_id, s, l in pairs if s is not None and l is not None]
        vectors = self.encoder.encode_many([[s["answer"], l["answer"]] for _, s, l in pairs])
        self._prepared = {pair_id: v for (pair_id, _, _), v in zip(pairs, vectors)}

    def score(self, group: CallGroup) -> list[Score]:
        small, large = group.by("small"), group.by("large")
        if small is None or large is None:
            return []
        vectors = self._prepared.pop(group.pair_id, None)
        if vectors is None:
            vectors = self.encoder.encode([small["answer"], large["answer"]])
        similarity = float(vectors[0] @ vectors[1])  # the encoder returns L2-normalised vectors
        return [Score(small["call_id"], similarity), Score(large["call_id"], 1.0, "reference answer")]


# ----------------------------------------------------------------------------------------------- LLM judge
#: MT-Bench single-answer grading prompt ("single-v1", Zheng et al. 2023): system and user message.
SINGLE_PROMPT = (
    "You are a helpful assistant.",
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an AI "
    "assistant to the user question displayed below. Your evaluation should consider factors such as the "
    "helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response. Begin your "
    "evaluation by providing a short explanation. Be as objective as possible. After providing your explanation, "
    'you must rate the response on a scale of 1 to 10 by strictly following this format: "[[rating]]", for '
    'example: "Rating: [[5]]".\n\n[Question]\n{question}\n\n[The Start of Assistant\'s Answer]\n{answer}\n'
    "[The End of Assistant's Answer]",
)
#: MT-Bench pairwise comparison prompt ("pair-v2"): system and user message; verdict [[A]], [[B]] or [[C]] (tie).
PAIRWISE_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to "
    "the user question displayed below. You should choose the assistant that follows the user's instructions and "
    "answers the user's question better. Your evaluation should consider factors such as the helpfulness, "
    "relevance, accuracy, depth, creativity, and level of detail of their responses. Begin your evaluation by "
    "comparing the two responses and provide a short explanation. Avoid any position biases and ensure that the "
    "order in which the responses were presented does not influence your decision. Do not allow the length of the "
    "responses to influence your evaluation. Do not favor certain names of the assistants. Be as objective as "
    "possible. After providing your explanation, output your final verdict by strictly following this format: "
    '"[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.',
    "[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's "
    "Answer]\n\n[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]",
)
_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]|rating:\s*\[?\s*(\d+(?:\.\d+)?)\s*\]?", re.IGNORECASE)
_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")

Complete = Callable[[list[dict]], str]


class JudgeParseError(ValueError):
    """The judge's output does not contain exactly one valid verdict."""


def parse_rating(output: str) -> float:
    """The 1-10 grade in a judge output (``[[7]]`` or ``Rating: 7``); JudgeParseError if absent, out of range or
    ambiguous."""
    values = {float(a or b) for a, b in _RATING.findall(output)}
    if not values:
        raise JudgeParseError("no rating in the format [[N]] found")
    if len(values) > 1:
        raise JudgeParseError(f"several different ratings: {sorted(values)}")
    value = values.pop()
    if not 1.0 <= value <= 10.0:
        raise JudgeParseError(f"rating {value:g} outside 1-10")
    return value


def parse_verdict(output: str) -> str:
    """``"A"``, ``"B"`` or ``"C"`` (tie) from a pairwise judge output; JudgeParseError if absent or ambiguous."""
    verdicts = set(_VERDICT.findall(output))
    if len(verdicts) != 1:
        raise JudgeParseError(
            "no verdict [[A]]/[[B]]/[[C]] found" if not verdicts else f"several verdicts: {sorted(verdicts)}"
        )
    return verdicts.pop()


def _question_text(group: CallGroup) -> str:
    turns = [(role, text) for role, text in group.conversation if text]
    if len(turns) == 1 and turns[0][0] == "user":
        return turns[0][1]
    return "\n".join(f"{role}: {text}" for role, text in turns)


def openai_complete(
    base_url: str,
    model: str,
    *,
    api_key: str | None = None,
    max_tokens: int = 512,
    temperature: float = 0.0,
    timeout: float = 120.0,
) -> Complete:
    """A ``complete(messages) -> text`` function that calls an OpenAI-compatible chat completions endpoint."""
    import os

    from openai import OpenAI

    client = OpenAI(
        base_url=base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "none", timeout=timeout, max_retries=2
    )

    def complete(messages: list[dict]) -> str:
        response = client.chat.completions.create(
            model=model, messages=messages, max_tokens=max_tokens, temperature=temperature
        )
        return response.choices[0].message.content or ""

    return complete


class JudgeScorer:
    """LLM-as-judge: ``mode="single"`` grades every answer 1-10; ``mode="pairwise"`` asks which of the two answers is
    better, in both orders (position bias), and scores the small answer P(small preferred), the large 1 - P.

    ``complete(messages) -> text`` is the judge (see :func:`openai_complete`). Errors of the judge call itself
    (network, HTTP) propagate: the run stops and a re-run resumes; unparsable verdicts are recorded as errors.
    """

    def __init__(self, complete: Complete, *, mode: str = "single"):
        if mode not in ("single", "pairwise"):
            raise ValueError(f"judge mode must be 'single' or 'pairwise', got {mode!r}")
        self.complete = complete
        self.mode = mode
        self.name = "judge" if mode == "single" else "judge-pairwise"

    def _ask(self, prompt: tuple[str, str], **fields: str) -> str:
        return self.complete(
            [{"role": "system", "content": prompt[0]}, {"role": "user", "content": prompt[1].format(**fields)}]
        )

    def score(self, group: CallGroup) -> list[Score]:
        if self.mode == "single":
            return [self._single(group, call) for call in group.calls]
        return self._pairwise(group)

    def _single(self, group: CallGroup, call: dict) -> Score:
        output = self._ask(SINGLE_PROMPT, question=_question_text(group), answer=call["answer"])
        try:
            return Score(call["call_id"], parse_rating(output), output)
        except JudgeParseError as exc:
            return Score(call["call_id"], None, output, f"unparsable judge output: {exc}")

    def _pairwise(self, group: CallGroup) -> list[Score]:
        small, large = group.by("small"), group.by("large")
        if small is None or large is None:
            return []
        question = _question_text(group)
        outputs = [
            self._ask(PAIRWISE_PROMPT, question=question, answer_a=small["answer"], answer_b=large["answer"]),
            self._ask(PAIRWISE_PROMPT, question=question, answer_a=large["answer"], answer_b=small["answer"]),
        ]
        raw = json.dumps({"small_first": outputs[0], "large_first": outputs[1]}, ensure_ascii=False)
        try:
            verdicts = [parse_verdict(o) for o in outputs]
        except JudgeParseError as exc:
            error = f"unparsable judge output: {exc}"
            return [Score(small["call_id"], None, raw, error), Score(large["call_id"], None, raw, error)]
        small_wins = [{"A": 1.0, "B": 0.0, "C": 0.5}[verdicts[0]], {"A": 0.0, "B": 1.0, "C": 0.5}[verdicts[1]]]
        p_small = sum(small_wins) / 2
        return [Score(small["call_id"], p_small, raw), Score(large["call_id"], 1.0 - p_small, raw)]


# ----------------------------------------------------------------------------------------------- running
@dataclass
class ScoreSummary:
    """What one :func:`score_log` run did."""

    scored: int = 0
    errors: int = 0
    skipped: int = 0
    unscorable: int = 0


#: Groups a batch scorer (``prepare``) works on at a time: its work runs ahead of the per-group commits by this many.
PREPARE_GROUPS = 4096


def existing_scores(conn: Any, scorer: str) -> dict[str, str | None]:
    """``call_id -> error`` of the rows the scorer already wrote."""
    return dict(conn.execute("SELECT call_id, error FROM scores WHERE scorer = ?", (scorer,)).fetchall())


def score_log(
    path: LogTarget,
    scorer: Scorer,
    *,
    retry_errors: bool = False,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScoreSummary:
    """Grade the log's calls that ``scorer`` has not graded yet; writes the ``scores`` table, one commit per group.

    ``limit`` caps the number of groups graded in this run; ``progress(done, total)`` is called after each group.
    """
    open_log(path).close()  # FileNotFoundError / LogFileError before any scorer runs
    groups = list(call_groups(path))
    conn = open_log(path)
    summary = ScoreSummary()
    try:
        done = existing_scores(conn, scorer.name)
        pending_groups: list[tuple[CallGroup, set[str]]] = []
        for group in groups:
            pending = {
                c["call_id"]
                for c in group.calls
                if c["call_id"] not in done or (retry_errors and done[c["call_id"]] is not None)
            }
            summary.skipped += len(group.calls) - len(pending)
            if pending:
                pending_groups.append((group, pending))
        if limit is not None:
            pending_groups = pending_groups[:limit]
        prepare = getattr(scorer, "prepare", None)  # a scorer that does its work in batches, ahead of the groups
        for i, (group, pending) in enumerate(pending_groups, start=1):
            if prepare is not None and (i - 1) % PREPARE_GROUPS == 0:
                prepare([g for g, _ in pending_groups[i - 1 : i - 1 + PREPARE_GROUPS]])
            scores = [s for s in scorer.score(group) if s.call_id in pending]
            summary.unscorable += len(pending) - len(scores)
            with conn:
                conn.executemany(
                    "INSERT INTO scores (call_id, scorer, score, raw, error, created) VALUES (?,?,?,?,?,?) "
                    "ON CONFLICT (call_id, scorer) DO UPDATE SET score = excluded.score, raw = excluded.raw, "
                    "error = excluded.error, created = excluded.created",
                    [(s.call_id, scorer.name, s.score, s.raw, s.error, time.time()) for s in scores],
                )
            summary.scored += sum(s.error is None for s in scores)
            summary.errors += sum(s.error is not None for s in scores)
            if progress:
                progress(i, len(pending_groups))
    finally:
        conn.close()
    return summary


def read_scores(path: LogTarget, scorer: str | None = None) -> list[dict]:
    """Rows of the ``scores`` table as dicts (optionally of one scorer)."""
    conn = open_log(path)
    try:
        cursor = conn.execute(
            "SELECT call_id, scorer, score, raw, error, created FROM scores" + (" WHERE scorer = ?" if scorer else ""),
            (scorer,) if scorer else (),
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
    finally:
        conn.close()


def scorer_names(path: LogTarget) -> list[str]:
    """The scorers that wrote rows into the log."""
    return sorted({row["scorer"] for row in read_scores(path)})


def make_scorer(
    name: str,
    *,
    references: str | Path | None = None,
    judge_url: str | None = None,
    judge_model: str | None = None,
    judge_max_tokens: int = 512,
    encoder: Any = None,
    pairwise: bool = False,
) -> Scorer:
    """The scorer ``"match"`` (needs ``references``), ``"embed"`` or ``"judge"`` (needs ``judge_url`` and
    ``judge_model``; ``pairwise=True`` for pairwise preference)."""
    if name == "match":
        if references is None:
            raise ValueError("the match scorer needs --references FILE (CSV/JSONL of query, reference)")
        return MatchScorer(load_references(references))
    if name == "embed":
        return EmbedScorer(encoder)
    if name == "judge":
        if not judge_url or not judge_model:
            raise ValueError("the judge scorer needs --judge-url (OpenAI-compatible base URL) and --judge-model")
        complete = openai_complete(judge_url, judge_model, max_tokens=judge_max_tokens)
        return JudgeScorer(complete, mode="pairwise" if pairwise else "single")
    raise ValueError(f"unknown scorer {name!r}; choose match, embed or judge")


def scores_by_call(path: LogTarget, scorer: str) -> dict[str, float]:
    """``call_id -> score`` of the successful rows of one scorer."""
    return {
        r["call_id"]: r["score"] for r in read_scores(path, scorer) if r["error"] is None and r["score"] is not None
    }
