"""The cascade runtime: small answers, the verifier judges, the large model answers what it rejects."""

import asyncio

import pytest

from hybrid_router import FallbackRunner, RouteDecision
from hybrid_router.core.cascade_runner import CascadeRunner, Verdict, json_problem, judge, tool_arguments_problem

CASCADE = RouteDecision("small", 0.8, 0.5, "default:quality_threshold", 0.5, strategy="cascade", verify_threshold=0.6)
ANSWERS = {"small": "small answer", "large": "large answer"}


def runner() -> CascadeRunner:
    return CascadeRunner(FallbackRunner(model_names=("s", "l")))


def test_an_accepted_small_answer_is_returned_with_its_score():
    calls = []
    result, answered = runner().run(CASCADE, lambda t: calls.append(t) or ANSWERS[t], lambda r: judge(0.9, 0.6))
    assert result == "small answer" and calls == ["small"]
    assert answered.answered_by == "small" and answered.verifier_score == 0.9 and not answered.escalated
    assert answered.metadata()["strategy"] == "cascade" and answered.models_called == ("small",)


def test_a_rejected_answer_escalates_and_both_models_ran():
    calls = []
    result, answered = runner().run(CASCADE, lambda t: calls.append(t) or ANSWERS[t], lambda r: judge(0.2, 0.6))
    assert result == "large answer" and calls == ["small", "large"]
    assert answered.answered_by == "large" and answered.escalated and answered.decision is CASCADE
    assert answered.escalation_reason == "verifier score 0.200 < threshold 0.600"
    assert answered.models_called == ("small", "large") and answered.metadata()["verifier_score"] == 0.2


def test_a_structural_problem_escalates_whatever_the_score():
    problem = tool_arguments_problem(['{"a": 1', None])
    _, answered = runner().run(CASCADE, ANSWERS.get, lambda r: judge(0.99, 0.6, problem))
    assert answered.escalated and answered.escalation_reason == "a tool call's arguments did not parse"


def test_when_the_large_model_fails_on_escalation_the_small_answer_is_kept():
    def call(target):
        if target == "large":
            raise ConnectionError("large is down")
        return ANSWERS[target]

    result, answered = runner().run(CASCADE, call, lambda r: judge(0.1, 0.6))
    assert result == "small answer" and answered.answered_by == "small"
    assert answered.escalated and "ConnectionError" in answered.fallback_reason


def test_route_strategy_and_direct_large_never_verify():
    def verify(_):
        raise AssertionError("must not verify")

    route = RouteDecision("small", 0.8, 0.5, "default:quality_threshold")
    assert runner().run(route, ANSWERS.get, verify)[0] == "small answer"
    direct = RouteDecision("large", 0.1, 0.5, "default:quality_threshold", strategy="cascade", verify_threshold=0.6)
    assert runner().run(direct, ANSWERS.get, verify)[0] == "large answer"


def test_a_stream_is_buffered_until_verified_then_replayed():
    events = []

    def start(target):
        for word in ANSWERS[target].split():
            events.append(f"{target}:{word}")
            yield word

    def verify(chunks):
        events.append("verify")
        return judge(0.9, 0.6)

    out = []
    for chunk, answered in runner().stream(CASCADE, start, verify):
        events.append(f"out:{chunk}")
        out.append(answered)
    assert events == ["small:small", "small:answer", "verify", "out:small", "out:answer"]
    assert [a.verifier_score for a in out] == [0.9, 0.9]


def test_an_escalated_stream_streams_the_large_model():
    start = lambda target: iter(ANSWERS[target].split())  # noqa: E731
    out = list(runner().stream(CASCADE, start, lambda chunks: judge(0.1, 0.6)))
    assert [c for c, _ in out] == ["large", "answer"] and all(a.escalated for _, a in out)


def test_async_run_and_stream():
    async def call(target):
        return ANSWERS[target]

    async def start(target):
        for word in ANSWERS[target].split():
            yield word

    async def main():
        result, answered = await runner().arun(CASCADE, call, lambda r: judge(0.1, 0.6))
        chunks = [c async for c, _ in runner().astream(CASCADE, start, lambda cs: judge(0.9, 0.6))]
        return result, answered, chunks

    result, answered, chunks = asyncio.run(main())
    assert result == "large answer" and answered.escalated and chunks == ["small", "answer"]


@pytest.mark.parametrize("text, bad", [('{"a": 1}', False), ("[1, 2]", False), ('{"a": ', True), ("sure!", True)])
def test_json_problem(text, bad):
    assert (json_problem(text) is not None) is bad


def test_verdict():
    assert Verdict(0.7).accepted and not judge(None, 0.5).accepted
