"""Running a cascade: the small model answers, the verifier judges the answer, the large model answers what it rejects.

Shared by both framework wrappers and the server. A :class:`CascadeRunner` wraps a
:class:`~hybrid_router.core.fallback.FallbackRunner`, so timeouts, the fallback policy and cooldowns apply to each
model call as in plain routing. For a decision that does not verify (strategy ``"route"``, or a cascade that sent
the query large at once) it is the fallback runner itself.

``verify(result)`` returns a :class:`Verdict`; the caller builds it from the answer's text (the verifier's score)
and from structural checks only the framework can make (a tool call or JSON that does not parse is escalated, never
returned). When the large model fails on an escalation, the small model's answer is returned after all, with the
escalation and the failure both recorded.

Streams: the small model's stream is buffered until its answer is verified (a verifier needs the whole answer),
then replayed; an escalated call streams the large model as it comes. A fallback to the large model before the
small model produced output streams through at once (nothing to verify).

Observe mode (``CascadeRunner(runner, observe=True)``): the decision is made and recorded, but the large model
answers every call (the small one is never called on the request path; a routing log's shadow calls can still ask
it in the background), so a team measures what routing would save before switching it on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, TypeVar

from .answered import Answered
from .decision import RouteDecision
from .fallback import FallbackRunner

T = TypeVar("T")
#: Token counts of one model call: ``{"input_tokens": n, "output_tokens": m}`` (None when unknown).
Usage = Mapping[str, int] | None


@dataclass(frozen=True)
class Verdict:
    """The verifier's score of the small model's answer, and why it was rejected (None: accepted)."""

    score: float | None
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is None


def judge(score: float | None, threshold: float, problem: str | None = None) -> Verdict:
    """Accept iff there is no structural ``problem`` and ``score >= threshold``."""
    if problem:
        return Verdict(score, problem)
    if score is None or score < threshold:
        shown = "none" if score is None else f"{score:.3f}"
        return Verdict(score, f"verifier score {shown} < threshold {threshold:.3f}")
    return Verdict(score)


#: ``response_format`` types that ask for a JSON answer (OpenAI-style; a schema class asks too).
JSON_FORMATS = ("json_object", "json_schema")


def asks_for_json(response_format: object) -> bool:
    """Whether a ``response_format`` (a dict, or a schema class as LangChain and LlamaIndex bind) asks for JSON."""
    return isinstance(response_format, type) or (
        isinstance(response_format, dict) and response_format.get("type") in JSON_FORMATS
    )


def json_problem(text: str) -> str | None:
    """A reason to escalate when JSON was asked for and ``text`` is not valid JSON."""
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return "the answer is not valid JSON"
    return None


def tool_arguments_problem(arguments: Iterable[str | dict | None]) -> str | None:
    """A reason to escalate when a tool call's arguments do not parse as a JSON object."""
    for raw in arguments:
        if isinstance(raw, dict):
            continue
        try:
            parsed = json.loads(raw or "{}")
        except (ValueError, TypeError, RecursionError):
            return "a tool call's arguments did not parse"
        if not isinstance(parsed, dict):
            return "a tool call's arguments are not a JSON object"
    return None


def _escalated(answered: Answered, decision: RouteDecision, verdict: Verdict, small_usage: Usage) -> Answered:
    return replace(
        answered,
        decision=decision,
        verifier_score=verdict.score,
        escalation_reason=verdict.reason,
        small_usage=small_usage,
    )


class CascadeRunner:
    """Runs decisions of either strategy (see the module docstring)."""

    def __init__(self, runner: FallbackRunner, *, observe: bool = False):
        self.runner = runner
        self.observe = observe

    @staticmethod
    def _observed(answered: Answered, decision: RouteDecision) -> Answered:
        return replace(answered, decision=decision, mode="observe")

    @staticmethod
    def _all_large(decision: RouteDecision) -> RouteDecision:
        return replace(decision, target="large", strategy="route", verify_threshold=None)

    def run(
        self,
        decision: RouteDecision,
        call: Callable[[str], T],
        verify: Callable[[T], Verdict],
        usage: Callable[[T], Usage] | None = None,
    ) -> tuple[T, Answered]:
        """One answer: ``call(target)`` runs a model; ``verify(small_result)`` judges the small model's answer.

        ``usage(small_result)`` gives the rejected small call's tokens, recorded on an escalation (``small_usage``)
        so cost tracking counts both calls.
        """
        if self.observe:
            result, answered = self.runner.run(self._all_large(decision), call)
            return result, self._observed(answered, decision)
        result, answered = self.runner.run(decision, call)
        if not decision.verifies or answered.answered_by != "small":
            return result, answered
        verdict = verify(result)
        if verdict.accepted:
            return result, replace(answered, verifier_score=verdict.score)
        large = replace(decision, target="large")
        final, escalation = self.runner.run(large, lambda target: call(target) if target == "large" else result)
        return final, _escalated(escalation, decision, verdict, usage(result) if usage else None)

    async def arun(
        self,
        decision: RouteDecision,
        call: Callable[[str], Awaitable[T]],
        verify: Callable[[T], Verdict],
        usage: Callable[[T], Usage] | None = None,
    ) -> tuple[T, Answered]:
        """Async :meth:`run` (``verify`` stays sync: it is a CPU-bound score)."""
        if self.observe:
            result, answered = await self.runner.arun(self._all_large(decision), call)
            return result, self._observed(answered, decision)
        result, answered = await self.runner.arun(decision, call)
        if not decision.verifies or answered.answered_by != "small":
            return result, answered
        verdict = verify(result)
        if verdict.accepted:
            return result, replace(answered, verifier_score=verdict.score)

        async def small_again() -> T:
            return result

        large = replace(decision, target="large")
        final, escalation = await self.runner.arun(
            large, lambda target: call(target) if target == "large" else small_again()
        )
        return final, _escalated(escalation, decision, verdict, usage(result) if usage else None)

    def stream(
        self,
        decision: RouteDecision,
        start: Callable[[str], Iterable[T]],
        verify: Callable[[list[T]], Verdict],
        *,
        is_output: Callable[[T], bool] | None = None,
        usage: Callable[[list[T]], Usage] | None = None,
    ) -> Iterator[tuple[T, Answered]]:
        """Stream; a cascade's small answer is buffered until ``verify(chunks)`` accepts it."""
        if self.observe:
            for chunk, answered in self.runner.stream(self._all_large(decision), start, is_output=is_output):
                yield chunk, self._observed(answered, decision)
            return
        if not decision.verifies:
            yield from self.runner.stream(decision, start, is_output=is_output)
            return
        chunks: list[T] = []
        answered: Answered | None = None
        for chunk, answered in self.runner.stream(decision, start, is_output=is_output):
            if answered.answered_by == "large":  # fell back before any small output: stream it through
                yield chunk, answered
            else:
                chunks.append(chunk)
        if answered is None or answered.answered_by == "large":
            return
        verdict = verify(chunks)
        if verdict.accepted:
            accepted = replace(answered, verifier_score=verdict.score)
            for chunk in chunks:
                yield chunk, accepted
            return
        large = replace(decision, target="large")
        small_usage = usage(chunks) if usage else None
        for chunk, escalation in self.runner.stream(
            large, lambda target: start(target) if target == "large" else iter(chunks), is_output=is_output
        ):
            yield chunk, _escalated(escalation, decision, verdict, small_usage)

    async def astream(
        self,
        decision: RouteDecision,
        start: Callable[[str], AsyncIterator[T]],
        verify: Callable[[list[T]], Verdict],
        *,
        is_output: Callable[[T], bool] | None = None,
        usage: Callable[[list[T]], Usage] | None = None,
    ) -> AsyncIterator[tuple[T, Answered]]:
        """Async :meth:`stream`."""
        if self.observe:
            async for chunk, answered in self.runner.astream(self._all_large(decision), start, is_output=is_output):
                yield chunk, self._observed(answered, decision)
            return
        if not decision.verifies:
            async for item in self.runner.astream(decision, start, is_output=is_output):
                yield item
            return
        chunks: list[T] = []
        answered: Answered | None = None
        async for chunk, answered in self.runner.astream(decision, start, is_output=is_output):
            if answered.answered_by == "large":
                yield chunk, answered
            else:
                chunks.append(chunk)
        if answered is None or answered.answered_by == "large":
            return
        verdict = verify(chunks)
        if verdict.accepted:
            accepted = replace(answered, verifier_score=verdict.score)
            for chunk in chunks:
                yield chunk, accepted
            return

        async def replay() -> AsyncIterator[T]:
            for chunk in chunks:
                yield chunk

        large = replace(decision, target="large")
        small_usage = usage(chunks) if usage else None
        async for chunk, escalation in self.runner.astream(
            large, lambda target: start(target) if target == "large" else replay(), is_output=is_output
        ):
            yield chunk, _escalated(escalation, decision, verdict, small_usage)
