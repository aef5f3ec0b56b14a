"""Cheap checks of a model's answer that hint at whether it is good enough (inputs of an answer verifier).

:func:`answer_features` maps ``(query, answer)`` to a float32 vector whose entries are named by
:data:`ANSWER_FEATURE_NAMES`. It has two parts:

* **generic features**, always computed: answer length (and its ratio to the query's), hedging, refusal and
  self-correction phrases, repetition loops (repeated word 4-grams, duplicated lines), signs of truncation (ends
  mid-sentence, unclosed code fence, unbalanced brackets) and final-answer format (``#### 42``, ``The answer is
  42``, ``\\boxed{42}``; whether the final answer is a number, an integer, and whether several final answers
  disagree);
* **task checks**, pluggable (:class:`TaskCheck`, :func:`register_check`). The built-in ones are

  - ``arithmetic``: every ``a op b = c`` in the worked answer (chained ``a + b = c + d = e`` too, GSM8K calculator
    annotations ``<<a*b=c>>``, thousands separators, ``$`` and ``%``, simple LaTeX) is evaluated; the share of
    correct equations, the number of wrong ones and whether there is any;
  - ``final_answer``: whether the final answer number appears in the worked steps and equals the last computed
    result;
  - ``query_numbers``: the share of the query's numbers (digits and number words) that the answer uses;
  - ``json``: when the query asks for JSON, whether the answer contains valid JSON;
  - ``python_code``: whether the answer's Python code blocks compile (``compile`` only, nothing is executed).

Every function here is total: any string (empty, binary garbage, a 10 MB answer, ``1e400``, ``5 / 0 = 0``,
``9^999999``) gives a finite vector and never raises; a user check that raises contributes zeros and warns once.
Texts longer than :data:`MAX_CHARS` are reduced to their head and tail (the final answer is at the tail), which
bounds the cost: a typical answer takes well under a millisecond.

Only the standard library and numpy are used.
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = [
    "ANSWER_FEATURES_VERSION",
    "ANSWER_FEATURE_NAMES",
    "AnswerContext",
    "DEFAULT_CHECKS",
    "GENERIC_FEATURE_NAMES",
    "MAX_CHARS",
    "TaskCheck",
    "answer_feature_matrix",
    "answer_feature_names",
    "answer_features",
    "check_equations",
    "get_check",
    "register_check",
    "registered_checks",
    "unregister_check",
]

#: Bump when a feature's definition changes: a verifier head stores the version it was trained on.
ANSWER_FEATURES_VERSION = 1

#: Longer texts are cut to their first and last MAX_CHARS // 2 characters before any check runs.
MAX_CHARS = 100_000

#: Values are clipped to [-VALUE_CLIP, VALUE_CLIP] (and NaN becomes 0) so that no feature is ever non-finite.
VALUE_CLIP = 1e6

# ---------------------------------------------------------------------------------------------- text helpers
_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])")
_FENCE = re.compile(r"```")
_CODE_BLOCK = re.compile(r"```[ \t]*([A-Za-z0-9_+\-]*)[^\n]*\n(.*?)```", re.DOTALL)

_HEDGES = re.compile(
    r"\b(?:i think|i believe|i'm not (?:sure|certain)|i am not (?:sure|certain)|not sure|it seems|seems to|"
    r"probably|possibly|perhaps|maybe|might be|could be|approximately|roughly|about|assuming|assume|"
    r"it is unclear|unclear|ambiguous|it depends|depending on)\b",
    re.IGNORECASE,
)
_REFUSALS = re.compile(
    r"\b(?:i cannot|i can't|i can not|i'm unable|i am unable|unable to|i won't|i will not|as an ai|"
    r"as a language model|i'm sorry|i am sorry|i apologi[sz]e|i don't have (?:access|enough)|not possible to|"
    r"cannot be determined|can't be determined|insufficient information|not enough information)\b",
    re.IGNORECASE,
)
_SELF_CORRECTIONS = re.compile(
    r"\b(?:wait|actually|correction|let me re|let's re|re-?evaluate|re-?calculate|re-?check|i made a mistake|"
    r"mistake|oops|however|but since|instead)\b",
    re.IGNORECASE,
)
_FINAL_HASH = re.compile(r"####\s*([^\n]*)")  # GSM8K's format: the rest of the line
_FINAL_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_FINAL_PHRASE = re.compile(
    r"(?:\bthe (?:final )?answer is|\bfinal answer\s*[:=]|^\s*answer\s*[:=]|\btherefore,? the answer is)\s*[:=]?\s*"
    r"([^\n.]*(?:\.\d[^\n.]*)*)",
    re.IGNORECASE | re.MULTILINE,
)
_CONNECTOR_END = re.compile(
    r"(?:[,;:(\-]|\b(?:and|or|the|a|an|of|to|in|with|for|is|are|that|which|but|so))\s*$", re.IGNORECASE
)
_NUMBER_WORDS: dict[str, float] = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
    "hundred": 100,
    "thousand": 1000,
    "million": 1e6,
    "billion": 1e9,
    "dozen": 12,
    "half": 0.5,
    "twice": 2,
    "double": 2,
    "triple": 3,
    "thrice": 3,
    "quarter": 0.25,
}


def _clip_text(text: str) -> str:
    """The text itself, or its head and tail when longer than :data:`MAX_CHARS`; non-strings become ''."""
    if not isinstance(text, str):
        return ""
    if len(text) > MAX_CHARS:
        half = MAX_CHARS // 2
        return text[:half] + "\n" + text[-half:]
    return text


def _to_float(token: str) -> float | None:
    """A number token (``1,234.5``, ``-3``) as a finite float, else None."""
    try:
        value = float(token.replace(",", ""))
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def _numbers(text: str) -> list[float]:
    """All finite numbers written with digits in ``text``."""
    out = []
    for match in _NUMBER.finditer(text):
        value = _to_float(match.group(0))
        if value is not None:
            out.append(value)
    return out


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def _log1p(x: float) -> float:
    return math.log1p(max(x, 0.0))


# ---------------------------------------------------------------------------------------------- arithmetic
_ANNOTATION = re.compile(r"<<([^<>=\n]{1,200})=([^<>\n]{1,60})>>\s*(\$?-?[\d,]*\.?\d*)")
_LATEX_SUBS = (
    (re.compile(r"\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}"), r"((\1)/(\2))"),
    (re.compile(r"\\(?:times|cdot|ast)\b"), " * "),
    (re.compile(r"\\div\b"), " / "),
    (re.compile(r"\\(?:left|right|,|;|!|quad|qquad)"), " "),
    (re.compile(r"\\[\[\]()]"), " "),
)
_ARITH_TOKEN = re.compile(
    r"\s*(?:(?P<num>\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\$?\.\d+)(?P<pct>\s?%)?|(?P<op>\*\*|[+\-*/×÷^·−–]|[xX](?![A-Za-z]))"
    r"|(?P<lp>\()|(?P<rp>\))|(?P<eq>=)|(?P<other>[A-Za-z_]+|\S))"
)
_MAX_EXPONENT = 1000.0
#: A sentence or line: ends at a newline or at '.', '!', '?', ';' followed by whitespace ("$2.50" stays whole).
_SEGMENT = re.compile(r"(?:[^\n.!?;]|[.!?;](?=\S))+")


@dataclass(frozen=True)
class _Tok:
    kind: str  # num, op, lp, rp, other
    text: str
    value: float = 0.0
    percent: bool = False
    decimals: int = 0


def _tokenize_line(line: str) -> list[list[_Tok]]:
    """A line's tokens split at each '=' (comparison operators '==', '<=', '>=', '!=' split nothing)."""
    parts: list[list[_Tok]] = [[]]
    prev_char = ""
    pos = 0
    for match in _ARITH_TOKEN.finditer(line):
        if match.end() == pos:  # only trailing whitespace left
            break
        pos = match.end()
        if match.group("num"):
            raw = match.group("num").replace("$", "").replace(" ", "")
            value = _to_float(raw)
            decimals = len(raw.split(".", 1)[1]) if "." in raw else 0
            if value is None:
                parts[-1].append(_Tok("other", raw))
            else:
                parts[-1].append(_Tok("num", raw, value, bool(match.group("pct")), decimals))
        elif match.group("op"):
            op = match.group("op")
            op = {"×": "*", "x": "*", "X": "*", "·": "*", "÷": "/", "−": "-", "–": "-", "**": "^"}.get(op, op)
            # 'x' is multiplication only between numbers/brackets ("6 x 2"), not inside a word ("box", "2x")
            if match.group("op") in "xX" and (match.start("op") > 0 and line[match.start("op") - 1].isalnum()):
                parts[-1].append(_Tok("other", op))
            else:
                parts[-1].append(_Tok("op", op))
        elif match.group("lp"):
            parts[-1].append(_Tok("lp", "("))
        elif match.group("rp"):
            parts[-1].append(_Tok("rp", ")"))
        elif match.group("eq"):
            nxt = line[match.end() : match.end() + 1]
            if prev_char in "<>!=" or nxt == "=":
                parts[-1].append(_Tok("other", "="))
            else:
                parts.append([])
        else:
            other = match.group("other")
            parts[-1].append(_Tok("other", other))  # a word ("12 apples"): it ends an expression
        prev_char = line[match.end() - 1] if match.end() else ""
    return parts


class _Parser:
    """Recursive-descent evaluation of + - * / ^ and brackets over number tokens.

    ``percent_as_fraction`` reads ``20%`` as 0.2 (else 20). Raises ValueError on anything it cannot evaluate
    (syntax, division by zero, overflow, non-finite values).
    """

    def __init__(self, toks: Sequence[_Tok], percent_as_fraction: bool):
        self.toks = toks
        self.i = 0
        self.pct = percent_as_fraction
        self.depth = 0

    def parse(self) -> float:
        value = self._sum()
        if self.i != len(self.toks):
            raise ValueError("trailing tokens")
        return value

    def _peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _sum(self) -> float:
        value = self._product()
        while (tok := self._peek()) is not None and tok.kind == "op" and tok.text in "+-":
            self.i += 1
            rhs = self._product()
            value = value + rhs if tok.text == "+" else value - rhs
        return _finite(value)

    def _product(self) -> float:
        value = self._power()
        while (tok := self._peek()) is not None and tok.kind == "op" and tok.text in "*/":
            self.i += 1
            rhs = self._power()
            if tok.text == "*":
                value *= rhs
            else:
                if rhs == 0:
                    raise ValueError("division by zero")
                value /= rhs
            _finite(value)
        return value

    def _power(self) -> float:
        base = self._unary()
        tok = self._peek()
        if tok is not None and tok.kind == "op" and tok.text == "^":
            self.i += 1
            exponent = self._power()
            if abs(exponent) > _MAX_EXPONENT or (base == 0 and exponent < 0):
                raise ValueError("exponent out of range")
            try:
                return _finite(math.pow(base, exponent))
            except (OverflowError, ValueError) as exc:
                raise ValueError("power") from exc
        return base

    def _unary(self) -> float:
        tok = self._peek()
        if tok is not None and tok.kind == "op" and tok.text == "-":
            self.i += 1
            return -self._unary()
        return self._atom()

    def _atom(self) -> float:
        tok = self._peek()
        if tok is None:
            raise ValueError("unexpected end")
        self.i += 1
        if tok.kind == "num":
            return tok.value / 100.0 if (tok.percent and self.pct) else tok.value
        if tok.kind == "lp":
            self.depth += 1
            if self.depth > 50:
                raise ValueError("too deep")
            value = self._sum()
            closing = self._peek()
            if closing is None or closing.kind != "rp":
                raise ValueError("unclosed bracket")
            self.i += 1
            self.depth -= 1
            return value
        raise ValueError(f"unexpected token {tok.text!r}")


def _finite(value: float) -> float:
    if not math.isfinite(value) or abs(value) > 1e300:
        raise ValueError("non-finite")
    return value


def _values(toks: Sequence[_Tok]) -> list[float]:
    """The values of an expression under both readings of '%' (empty when it does not evaluate)."""
    out = []
    for pct in (False, True):
        try:
            out.append(_Parser(toks, pct).parse())
        except (ValueError, RecursionError, OverflowError, ZeroDivisionError):
            continue
        if not any(t.percent for t in toks):
            break
    return out


def _is_arith(tok: _Tok) -> bool:
    return tok.kind in ("num", "op", "lp", "rp")


def _n_ops(toks: Sequence[_Tok]) -> int:
    return sum(1 for k, t in enumerate(toks) if t.kind == "op" and not (t.text == "-" and k == 0))


def _lhs_candidates(part: list[_Tok]) -> list[_Tok] | None:
    """The longest evaluable arithmetic suffix of the text left of an '='.

    None when the suffix is cut out of a longer expression that mixes in words ("12 apples/day x 7 = 84": the
    '7' follows an operator) - such an equation cannot be checked.
    """
    start = len(part)
    while start > 0 and _is_arith(part[start - 1]):
        start -= 1
    for s in range(start, len(part)):
        toks = part[s:]
        if toks[0].kind == "op" and toks[0].text != "-":
            continue
        if toks[0].kind == "rp":
            continue
        if _values(toks):
            before = part[s - 1] if s > 0 else None
            if before is not None and before.kind == "op":
                return None  # the expression started earlier, among words
            if before is not None and before.kind == "other" and s > 1 and part[s - 2].kind == "op":
                return None  # "... x 3 apples * 2 = ": a unit inside a longer expression
            return toks
    return None


def _rhs_candidates(part: list[_Tok]) -> list[_Tok] | None:
    """The longest evaluable arithmetic prefix of the text right of an '='."""
    end = 0
    while end < len(part) and _is_arith(part[end]):
        end += 1
    for e in range(end, 0, -1):
        toks = part[:e]
        if toks[-1].kind == "op":
            continue
        if _values(toks):
            return toks
    return None


def _decimals(toks: Sequence[_Tok]) -> int:
    nums = [t for t in toks if t.kind == "num"]
    return nums[0].decimals if len(nums) == 1 else 6


def _equal(lhs: Sequence[_Tok], rhs: Sequence[_Tok], lhs_values: Sequence[float], rhs_values: Sequence[float]) -> bool:
    """Whether the two sides agree to the precision the simpler side is written with (or within 0.1%)."""
    decimals = min(_decimals(lhs), _decimals(rhs))
    tol_abs = 0.5 * 10.0 ** (-decimals) + 1e-9
    return any(abs(a - b) <= max(tol_abs, 1e-3 * max(abs(a), abs(b))) for a in lhs_values for b in rhs_values)


@dataclass(frozen=True)
class EquationResult:
    """What :func:`check_equations` found: checked equations, how many were wrong, their results in order."""

    n_checked: int
    n_wrong: int
    results: tuple[float, ...]
    annotation_mismatches: int


def check_equations(text: str) -> EquationResult:
    """Evaluate every checkable ``lhs = rhs`` in ``text`` (see the module docstring). Never raises."""
    text = _clip_text(text)
    checked = wrong = mismatches = 0
    results: list[tuple[int, float]] = []  # (position in the text, value) of each checked equation's result
    # GSM8K calculator annotations: "<<9*2=18>>18" - check the expression and the number copied after it
    for match in _ANNOTATION.finditer(text):
        lhs_parts = _tokenize_line(match.group(1))
        rhs_parts = _tokenize_line(match.group(2))
        if len(lhs_parts) != 1 or len(rhs_parts) != 1:
            continue
        lhs, rhs = lhs_parts[0], rhs_parts[0]
        if not (lhs and rhs and all(map(_is_arith, lhs)) and all(map(_is_arith, rhs))):
            continue
        lhs_values, rhs_values = _values(lhs), _values(rhs)
        if lhs_values and rhs_values:
            checked += 1
            wrong += not _equal(lhs, rhs, lhs_values, rhs_values)
            results.append((match.start(), rhs_values[0]))
            copied = _to_float(match.group(3).replace("$", "")) if match.group(3).strip("$,.") else None
            if copied is not None and not _same(copied, rhs_values[0]):
                mismatches += 1
    # the rest, sentence by sentence, each annotation replaced by the number after it ("= $<<9*2=18>>18" -> "= $18")
    for segment in _SEGMENT.finditer(text):
        raw = segment.group(0)
        if "=" not in raw or len(raw) > 2000:
            continue
        line = _ANNOTATION.sub(lambda m: " " + m.group(3), raw)
        for pattern, repl in _LATEX_SUBS:
            line = pattern.sub(repl, line)
        parts = _tokenize_line(line)
        for left, right in zip(parts, parts[1:]):
            lhs, rhs = _lhs_candidates(left), _rhs_candidates(right)
            if lhs is None or rhs is None or _n_ops(lhs) + _n_ops(rhs) == 0:
                continue  # "x = 7", "7 days = 1 week": nothing computed
            rhs_values = _values(rhs)
            checked += 1
            wrong += not _equal(lhs, rhs, _values(lhs), rhs_values)
            results.append((segment.end(), rhs_values[0]))
    results.sort(key=lambda item: item[0])
    return EquationResult(checked, wrong, tuple(v for _, v in results), mismatches)


# ---------------------------------------------------------------------------------------------- final answer
@dataclass(frozen=True)
class FinalAnswer:
    """The final answer the text states: its text, which marker introduced it, and its number (if any)."""

    text: str
    marker: str  # "hash", "boxed", "phrase" or "" (no explicit marker: the last line)
    number: float | None
    n_distinct_marked: int  # distinct numbers among all explicit final-answer markers


def find_final_answer(answer: str) -> FinalAnswer:
    """The last explicitly marked final answer (``####``, ``\\boxed{}``, "the answer is"), else the last line."""
    marked: list[tuple[int, str, str]] = []
    for marker, pattern in (("hash", _FINAL_HASH), ("boxed", _FINAL_BOXED), ("phrase", _FINAL_PHRASE)):
        for match in pattern.finditer(answer):
            marked.append((match.start(), marker, match.group(1).strip()))
    if marked:
        marked.sort(key=lambda item: item[0])
        _, marker, text = marked[-1]
        distinct: list[float] = []
        for _, _, t in marked:
            nums = _numbers(t)
            if nums and not any(_same(nums[0], d) for d in distinct):
                distinct.append(nums[0])
        nums = _numbers(text)
        return FinalAnswer(text, marker, nums[0] if nums else None, len(distinct))
    lines = [ln.strip() for ln in answer.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    nums = _numbers(last)
    return FinalAnswer(last, "", nums[-1] if nums else None, 0)


# ---------------------------------------------------------------------------------------------- context + checks
@dataclass
class AnswerContext:
    """One (query, answer) pair with parsed pieces that several checks share (computed on first use)."""

    query: str
    answer: str
    _cache: dict = field(default_factory=dict, repr=False)

    @cached_property
    def final(self) -> FinalAnswer:
        return find_final_answer(self.answer)

    @cached_property
    def equations(self) -> EquationResult:
        return check_equations(self.answer)

    @cached_property
    def answer_numbers(self) -> list[float]:
        return _numbers(self.answer)

    @cached_property
    def answer_words(self) -> list[str]:
        return [w.lower() for w in _WORD.findall(self.answer)]

    @cached_property
    def code_blocks(self) -> list[tuple[str, str]]:
        """(language, code) of each fenced code block."""
        return [(m.group(1).lower(), m.group(2)) for m in _CODE_BLOCK.finditer(self.answer)]


@runtime_checkable
class TaskCheck(Protocol):
    """A pluggable answer check: a name, the names of the values it returns, and the function computing them.

    ``__call__`` gets an :class:`AnswerContext` (``ctx.query``, ``ctx.answer`` and shared parsed pieces) and returns
    ``len(feature_names)`` numbers. Return zeros when the check does not apply and add an explicit "applies"
    feature, so that a head can tell "not applicable" from "failed". Exceptions are caught (the check then
    contributes zeros and a warning is issued once).
    """

    name: str
    feature_names: tuple[str, ...]

    def __call__(self, ctx: AnswerContext) -> Sequence[float]: ...


class ArithmeticCheck:
    """Arithmetic consistency of the worked answer."""

    name = "arithmetic"
    feature_names = (
        "has_equations",
        "log_equations",
        "equation_correct_share",
        "log_wrong_equations",
        "any_wrong_equation",
        "annotation_copy_mismatch",
    )

    def __call__(self, ctx: AnswerContext) -> Sequence[float]:
        eq = ctx.equations
        if eq.n_checked == 0:
            return (0.0, 0.0, 1.0, 0.0, 0.0, float(eq.annotation_mismatches > 0))
        return (
            1.0,
            _log1p(eq.n_checked),
            1.0 - eq.n_wrong / eq.n_checked,
            _log1p(eq.n_wrong),
            float(eq.n_wrong > 0),
            float(eq.annotation_mismatches > 0),
        )


class FinalAnswerSupportCheck:
    """Whether the final answer's number is backed by the worked steps."""

    name = "final_answer"
    feature_names = ("final_in_steps", "final_is_last_result", "final_not_in_steps")

    def __call__(self, ctx: AnswerContext) -> Sequence[float]:
        final = ctx.final
        if final.number is None:
            return (0.0, 0.0, 0.0)
        cut = ctx.answer.rfind(final.text) if final.text else -1
        steps = ctx.answer[:cut] if cut > 0 else ctx.answer
        in_steps = (
            any(_same(final.number, v) for v in _numbers(steps))
            if final.marker
            else sum(_same(final.number, v) for v in ctx.answer_numbers) >= 2
        )
        results = ctx.equations.results
        is_last = bool(results) and _same(final.number, results[-1])
        return (float(in_steps), float(is_last), float(not in_steps))


class QueryNumbersCheck:
    """How many of the query's numbers the answer uses (an unused quantity is a classic word-problem error)."""

    name = "query_numbers"
    feature_names = ("query_has_numbers", "query_number_coverage", "log_unused_query_numbers")

    def __call__(self, ctx: AnswerContext) -> Sequence[float]:
        query_nums = _numbers(ctx.query) + [
            _NUMBER_WORDS[w] for w in (x.lower() for x in _WORD.findall(ctx.query)) if w in _NUMBER_WORDS
        ]
        distinct: list[float] = []
        for v in query_nums:
            if not any(_same(v, d) for d in distinct):
                distinct.append(v)
        if not distinct:
            return (0.0, 1.0, 0.0)
        answer_vals = set(round(v, 6) for v in ctx.answer_numbers)
        answer_vals.update(_NUMBER_WORDS[w] for w in ctx.answer_words if w in _NUMBER_WORDS)
        used = sum(1 for v in distinct if round(v, 6) in answer_vals)
        return (1.0, used / len(distinct), _log1p(len(distinct) - used))


_JSON_REQUEST = re.compile(r"\bjson\b", re.IGNORECASE)


def _json_candidates(answer: str, blocks: Iterable[tuple[str, str]]) -> Iterable[str]:
    yield answer.strip()
    for _, code in blocks:
        yield code.strip()
    for open_, close in (("{", "}"), ("[", "]")):
        start, end = answer.find(open_), answer.rfind(close)
        if 0 <= start < end:
            yield answer[start : end + 1]


def _valid_json(text: str) -> bool:
    if not text or text[0] not in "{[" or len(text) > MAX_CHARS:
        return False
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


class JsonCheck:
    """When the query asks for JSON: does the answer contain a valid JSON object or array?"""

    name = "json"
    feature_names = ("json_requested", "json_valid", "json_requested_invalid")

    def __call__(self, ctx: AnswerContext) -> Sequence[float]:
        if not _JSON_REQUEST.search(ctx.query):
            return (0.0, 0.0, 0.0)
        valid = any(_valid_json(c) for c in _json_candidates(ctx.answer, ctx.code_blocks))
        return (1.0, float(valid), float(not valid))


_PYTHON_HINT = re.compile(r"^\s*(?:def |class |import |from \w+ import|print\(|for .+:\s*$|if .+:\s*$)", re.MULTILINE)
_CODE_REQUEST = re.compile(r"\b(?:code|function|program|script|python|implement|class|algorithm)\b", re.IGNORECASE)
_MAX_CODE_CHARS = 20_000


def _compiles(code: str) -> bool:
    if len(code) > _MAX_CODE_CHARS:
        return True  # too long to check cheaply: no evidence either way
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            compile(code, "<answer>", "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
            return False
    return True


class PythonCodeCheck:
    """Whether the answer's Python code blocks parse (no code is run)."""

    name = "python_code"
    feature_names = (
        "has_code_block",
        "python_block_count",
        "python_compile_share",
        "python_syntax_error",
        "code_requested_no_block",
    )

    def __call__(self, ctx: AnswerContext) -> Sequence[float]:
        blocks = ctx.code_blocks
        python = [
            code
            for lang, code in blocks
            if lang in ("python", "py", "python3") or (not lang and _PYTHON_HINT.search(code))
        ]
        requested_missing = float(not blocks and bool(_CODE_REQUEST.search(ctx.query)))
        if not python:
            return (float(bool(blocks)), 0.0, 1.0, 0.0, requested_missing)
        ok = sum(map(_compiles, python))
        return (1.0, _log1p(len(python)), ok / len(python), float(ok < len(python)), requested_missing)


# ---------------------------------------------------------------------------------------------- registry
_CHECKS: dict[str, TaskCheck] = {}
_WARNED: set[str] = set()


def register_check(check: TaskCheck, *, replace: bool = False) -> TaskCheck:
    """Make ``check`` usable by name in ``answer_features(..., checks=[..., check.name])``."""
    if not isinstance(check, TaskCheck):
        raise TypeError("a task check needs a 'name', a 'feature_names' tuple and __call__(ctx)")
    if not check.name or not isinstance(check.feature_names, tuple) or not check.feature_names:
        raise ValueError("a task check needs a non-empty name and a non-empty tuple of feature names")
    if check.name in _CHECKS and not replace:
        raise ValueError(f"a task check named {check.name!r} is already registered (pass replace=True)")
    _CHECKS[check.name] = check
    return check


def unregister_check(name: str) -> None:
    """Remove a registered check (the built-in ones cannot be removed)."""
    if name in DEFAULT_CHECKS:
        raise ValueError(f"{name!r} is a built-in check")
    _CHECKS.pop(name, None)


def get_check(name: str) -> TaskCheck:
    """The registered check called ``name``."""
    try:
        return _CHECKS[name]
    except KeyError:
        raise KeyError(f"unknown task check {name!r}; registered: {', '.join(_CHECKS)}") from None


def registered_checks() -> tuple[str, ...]:
    """Names of all registered checks."""
    return tuple(_CHECKS)


for _check in (ArithmeticCheck(), FinalAnswerSupportCheck(), QueryNumbersCheck(), JsonCheck(), PythonCodeCheck()):
    register_check(_check)

#: The built-in checks, in the order of their features in :data:`ANSWER_FEATURE_NAMES`.
DEFAULT_CHECKS: tuple[str, ...] = ("arithmetic", "final_answer", "query_numbers", "json", "python_code")

# ---------------------------------------------------------------------------------------------- generic features
GENERIC_FEATURE_NAMES: tuple[str, ...] = (
    "empty",
    "log_chars",
    "log_words",
    "log_lines",
    "log_length_ratio",
    "log_hedges",
    "log_refusals",
    "log_self_corrections",
    "repeated_4gram_share",
    "log_max_4gram_count",
    "duplicate_line_share",
    "ends_with_terminal",
    "ends_with_connector",
    "unclosed_code_fence",
    "unbalanced_brackets",
    "has_final_marker",
    "final_marker_hash",
    "final_marker_boxed",
    "final_marker_phrase",
    "final_is_number",
    "final_is_integer",
    "final_is_negative",
    "final_log_magnitude",
    "conflicting_final_answers",
)


def _generic(ctx: AnswerContext) -> list[float]:
    answer, query = ctx.answer, ctx.query
    stripped = answer.rstrip()
    words = ctx.answer_words
    n_words = len(words)
    grams = Counter(zip(words, words[1:], words[2:], words[3:])) if n_words >= 4 else Counter()
    n_grams = max(n_words - 3, 1)
    repeated = sum(c for c in grams.values() if c > 1) / n_grams if grams else 0.0
    lines = [ln.strip() for ln in answer.splitlines() if len(ln.strip()) >= 10]
    dup_lines = 1.0 - len(set(lines)) / len(lines) if lines else 0.0
    last_line = stripped.rsplit("\n", 1)[-1]
    final = ctx.final
    number = final.number
    terminal = bool(stripped) and (
        stripped[-1] in ".!?\"')]}`*|>" or (final.marker == "hash" and last_line.lstrip().startswith("####"))
    )
    brackets = sum(abs(answer.count(a) - answer.count(b)) for a, b in ("()", "[]", "{}"))
    return [
        float(not answer.strip()),
        _log1p(len(answer)),
        _log1p(n_words),
        _log1p(answer.count("\n")),
        math.log((len(answer) + 1.0) / (len(query) + 1.0)),
        _log1p(len(_HEDGES.findall(answer))),
        _log1p(len(_REFUSALS.findall(answer))),
        _log1p(len(_SELF_CORRECTIONS.findall(answer))),
        repeated,
        _log1p(max(grams.values(), default=0)),
        dup_lines,
        float(terminal),
        float(bool(_CONNECTOR_END.search(stripped)) and not terminal),
        float(len(_FENCE.findall(answer)) % 2 == 1),
        float(brackets > 0),
        float(bool(final.marker)),
        float(final.marker == "hash"),
        float(final.marker == "boxed"),
        float(final.marker == "phrase"),
        float(number is not None),
        float(number is not None and number == int(number)),
        float(number is not None and number < 0),
        math.log10(abs(number) + 1.0) if number is not None else 0.0,
        float(final.n_distinct_marked > 1),
    ]


# ---------------------------------------------------------------------------------------------- public API
def answer_feature_names(checks: Sequence[str] = DEFAULT_CHECKS) -> tuple[str, ...]:
    """Column names for ``checks``: the generic features, then each check's features prefixed by its name."""
    names = list(GENERIC_FEATURE_NAMES)
    for name in checks:
        names += [f"{name}.{f}" for f in get_check(name).feature_names]
    return tuple(names)


#: Column names of :func:`answer_features` with the built-in checks.
ANSWER_FEATURE_NAMES: tuple[str, ...] = answer_feature_names(DEFAULT_CHECKS)


def _run_check(check: TaskCheck, ctx: AnswerContext) -> list[float]:
    n = len(check.feature_names)
    try:
        values = [float(v) for v in check(ctx)]
        if len(values) != n:
            raise ValueError(f"returned {len(values)} values for {n} feature names")
        return values
    except Exception as exc:  # noqa: BLE001 - a check must never break scoring
        if check.name not in _WARNED:
            _WARNED.add(check.name)
            warnings.warn(
                f"answer check {check.name!r} failed ({type(exc).__name__}: {exc}); it contributes zeros",
                RuntimeWarning,
                stacklevel=3,
            )
        return [0.0] * n


def answer_features(query: str, answer: str, checks: Sequence[str] = DEFAULT_CHECKS) -> np.ndarray:
    """Feature vector (float32, named by ``answer_feature_names(checks)``) of one answer to one query."""
    ctx = AnswerContext(_clip_text(query), _clip_text(answer))
    values = _generic(ctx)
    for name in checks:
        values += _run_check(get_check(name), ctx)
    out = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=VALUE_CLIP, neginf=-VALUE_CLIP)
    return np.clip(out, -VALUE_CLIP, VALUE_CLIP).astype(np.float32)


def answer_feature_matrix(
    queries: Sequence[str], answers: Sequence[str], checks: Sequence[str] = DEFAULT_CHECKS
) -> np.ndarray:
    """``[n, len(answer_feature_names(checks))]`` float32 matrix for paired queries and answers."""
    if len(queries) != len(answers):
        raise ValueError(f"got {len(queries)} queries and {len(answers)} answers")
    width = len(answer_feature_names(checks))
    if not len(queries):
        return np.zeros((0, width), dtype=np.float32)
    return np.stack([answer_features(q, a, checks) for q, a in zip(queries, answers)])
