"""Escalate-only session stickiness (the multi-turn policy): once a session went large, it stays large."""

from lc_fakes import ScriptedChatModel

from hybrid_router import Answered, RouteDecision
from hybrid_router.core.pinning import StickySessions
from langchain_hybrid import HybridChatModel


def model(router, **fields) -> HybridChatModel:
    small, large = ScriptedChatModel(model_name="small-m"), ScriptedChatModel(model_name="large-m")
    return HybridChatModel(small=small, large=large, router=router, **fields)


def meta(message) -> dict:
    return message.response_metadata["hybrid_router"]


def config(thread: str, threshold: float) -> dict:
    return {"configurable": {"thread_id": thread}, "metadata": {"quality_threshold": threshold}}


def test_a_session_that_went_large_stays_large(default_router):
    llm = model(default_router, sticky_sessions=True)
    first = llm.invoke("Prove that there are infinitely many primes.", config=config("t1", 1.0))
    second = llm.invoke("Thanks, and what is 2 + 2?", config=config("t1", 0.0))
    other = llm.invoke("Thanks, and what is 2 + 2?", config=config("t2", 0.0))
    assert meta(first)["answered_by"] == "large"
    assert meta(second)["answered_by"] == "large" and meta(second)["threshold_source"].startswith("sticky:")
    assert meta(other)["answered_by"] == "small"  # another session is not affected
    forced = llm.invoke("And 3 + 3?", config=config("t1", 0.0), hybrid_route="small")
    assert meta(forced)["answered_by"] == "small"  # the caller says otherwise


def test_off_by_default_and_small_answers_do_not_stick(default_router):
    llm = model(default_router)
    llm.invoke("Prove that there are infinitely many primes.", config=config("t1", 1.0))
    assert meta(llm.invoke("What is 2 + 2?", config=config("t1", 0.0)))["answered_by"] == "small"
    sticky = model(default_router, sticky_sessions=True)
    sticky.invoke("Hi", config=config("t3", 0.0))
    assert meta(sticky.invoke("Hi again", config=config("t3", 0.0)))["answered_by"] == "small"


def test_observe_mode_never_makes_a_session_sticky():
    sessions = StickySessions()
    decision = RouteDecision("small", 0.9, 0.5, "default:quality_threshold")
    sessions.record("s", Answered(decision, "large", mode="observe"))
    assert sessions.get("s") is None
    sessions.record("s", Answered(decision, "large", "small model failed: X"))
    assert sessions.get("s").target == "large"


def test_large_answers_match_by_content_and_keep_no_text():
    from hybrid_router.core.pinning import LargeAnswers

    answers = LargeAnswers(max_answers=2)
    decision = RouteDecision("small", 0.9, 0.5, "default:quality_threshold")
    answers.record("  The proof goes by contradiction.  ", Answered(decision, "large", "small model failed: X"))
    answers.record("a small answer", Answered(decision, "small"))
    answers.record("observed", Answered(decision, "large", mode="observe"))
    found = answers.find(["Hello", "The proof goes by contradiction."])
    assert (found.target, found.threshold_source) == ("large", "sticky:default:quality_threshold")
    assert answers.find(["a small answer", "observed", ""]) is None
    assert "proof" not in repr(answers._large._pins)  # digests only
