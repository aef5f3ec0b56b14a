"""Cheap hand-made query features that hint at how hard a query is for a small model.

Length and structure, numbers (how many, how large, decimals), math and code notation, multiple-choice layout,
question type and word groups that signal multi-step arithmetic or reasoning. The text is tokenised once by one
regular expression and the word groups are looked up in sets, so a query costs a few tens of microseconds.
:func:`query_features` returns a float32 matrix whose columns are named by :data:`FEATURE_NAMES`; heads
standardise the columns with statistics from their training data.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache
from typing import Sequence

import numpy as np

FEATURES_VERSION = 1

_TOKEN = re.compile(r"[A-Za-z]+|\d+(?:[.,]\d+)*|[^\sA-Za-z\d]")
_SENTENCE_END = re.compile(r"[.?!](?:\s|$)")
_CHOICE = re.compile(r"^\s*\(?[A-Da-d][.)]\s", re.MULTILINE)
_HOW_MANY = re.compile(r"\bhow (?:many|much|long|far|old|fast)\b", re.IGNORECASE)
_LATEX = re.compile(r"\\[a-z]+|\^|_\{")
_CODE = re.compile(r"```|\bdef |\breturn\b|\bimport |\bfunction\b|[{};]$|==|!=", re.MULTILINE)

_GROUPS: dict[str, frozenset[str]] = {
    "number_words": frozenset(
        "one two three four five six seven eight nine ten eleven twelve fifteen twenty thirty forty fifty sixty "
        "hundred thousand million billion dozen half quarter third fourth fifth twice double triple thrice".split()
    ),
    "relation_words": frozenset(
        "times each per every more less fewer total remaining remain remains left rest average ratio fraction "
        "rate speed discount increase decrease increased decreased sum difference product quotient percent "
        "percentage profit cost costs price pay paid earn earns earned spend spent buy bought sell sold".split()
    ),
    "sequence_words": frozenset("first then after last next later before finally now decided until while".split()),
    "unit_words": frozenset(
        "second seconds minute minutes hour hours day days week weeks month months year years mile miles km "
        "meter meters feet foot inch inches pound pounds kg gram grams liter liters gallon gallons".split()
    ),
    "reasoning_words": frozenset(
        "prove proof show derive demonstrate justify lemma theorem integer integers prime polynomial equation "
        "function probability maximum minimum real complex matrix".split()
    ),
    "negation_words": frozenset("not never no none except cannot without neither nor".split()),
    "condition_words": frozenset("if then but however otherwise unless although whereas because".split()),
    "creative_words": frozenset(
        "write compose create draft imagine describe craft generate suggest brainstorm pretend story poem "
        "essay blog email letter".split()
    ),
    "wh_words": frozenset("what who when where which whom whose why how".split()),
}
_OPERATORS = frozenset("+-*/=<>^×÷")
_CURRENCY = frozenset("$€£")

FEATURE_NAMES: tuple[str, ...] = (
    "log_chars",
    "log_words",
    "log_sentences",
    "log_lines",
    "log_clauses",
    "log_numbers",
    "log_distinct_numbers",
    "max_number_log10",
    "mean_number_log10",
    "decimal_share",
    "log_percent",
    "log_currency",
    "log_operators",
    "log_latex",
    "log_code",
    "log_question_marks",
    "multiple_choice",
    "how_many",
    "starts_with_wh",
    "starts_creative",
    *(f"log_{name}" for name in _GROUPS),
    "mean_word_length",
    "long_word_share",
    "distinct_word_share",
    "digit_share",
    "upper_share",
    "ends_with_answer",
)


def _number(token: str) -> float:
    if token.count(",") and not token.count("."):
        token = token.replace(",", "")
    try:
        return float(token.replace(",", ""))
    except ValueError:
        return 0.0


@lru_cache(maxsize=4096)
def text_features(text: str) -> tuple[float, ...]:
    """The feature vector of one text (cached: a router head may ask for it more than once per query)."""
    tokens = _TOKEN.findall(text)
    words = [t for t in tokens if t[0].isalpha()]
    lower = [w.lower() for w in words]
    counts = Counter(lower)
    numbers = [_number(t) for t in tokens if t[0].isdigit()]
    magnitudes = [math.log10(abs(v) + 1.0) for v in numbers]
    symbols = Counter(t for t in tokens if len(t) == 1 and not t.isalnum())
    n_words, n_chars = len(words), max(len(text), 1)
    first = lower[0] if lower else ""
    groups = [sum(counts[w] for w in group.intersection(counts)) for group in _GROUPS.values()]
    letters = sum(len(w) for w in words)
    return (
        math.log1p(len(text)),
        math.log1p(n_words),
        math.log1p(len(_SENTENCE_END.findall(text))),
        math.log1p(text.count("\n")),
        math.log1p(symbols[","] + symbols[";"] + symbols["."] + counts["and"] + counts["then"]),
        math.log1p(len(numbers)),
        math.log1p(len(set(numbers))),
        max(magnitudes, default=0.0),
        sum(magnitudes) / len(magnitudes) if magnitudes else 0.0,
        sum(1 for v in numbers if v != int(v)) / max(len(numbers), 1),
        math.log1p(symbols["%"] + counts["percent"] + counts["percentage"]),
        math.log1p(sum(symbols[c] for c in _CURRENCY)),
        math.log1p(sum(symbols[c] for c in _OPERATORS)),
        math.log1p(len(_LATEX.findall(text))),
        math.log1p(len(_CODE.findall(text))),
        math.log1p(symbols["?"]),
        float(len(_CHOICE.findall(text)) >= 2),
        float(_HOW_MANY.search(text) is not None),
        float(first in _GROUPS["wh_words"]),
        float(first in _GROUPS["creative_words"]),
        *(math.log1p(g) for g in groups),
        letters / max(n_words, 1),
        sum(1 for w in words if len(w) > 8) / max(n_words, 1),
        len(counts) / max(n_words, 1),
        sum(map(str.isdigit, text)) / n_chars,
        sum(map(str.isupper, text)) / max(letters, 1),
        float(text.rstrip().endswith("Answer:")),
    )


def query_features(texts: Sequence[str]) -> np.ndarray:
    """Feature matrix ``[len(texts), len(FEATURE_NAMES)]`` (float32) of raw query texts."""
    if not len(texts):
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    return np.asarray([text_features(t) for t in texts], dtype=np.float32)
