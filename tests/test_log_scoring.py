"""Grading logged answers: judge verdict parsing and error recording, reference match, embedding similarity."""

from __future__ import annotations

import json

import pytest

from hybrid_router import Answered, RouteDecision
from hybrid_router.cli import main
from hybrid_router.traffic.log_scoring import (
    EmbedScorer,
    JudgeParseError,
    JudgeScorer,
    MatchScorer,
    final_number,
    load_references,
    match_answer,
    openai_complete,
    parse_rating,
    parse_verdict,
    read_scores,
    score_log,
)
from hybrid_router.traffic.routing_log import RoutingLog

SMALL = Answered(RouteDecision("small", 0.8, 0.5, "kwarg:quality_threshold", 0.5), "small", None, ("tiny", "big"))


def make_log(path, rows, *, shadow=True):
    """A log with one call per (question, small answer, large answer); the large answer as its shadow."""
    with RoutingLog(path, shadow_rate=1.0 if shadow else 0.0) as log:
        for question, small_answer, large_answer in rows:
            call_id = log.log_call(question, SMALL, small_answer)
            if shadow:
                log.maybe_shadow(call_id, question, SMALL, lambda a=large_answer: (a, 5, 5)).result(5)
    return path


# ---------------------------------------------------------------- verdict parsing


def test_parse_rating_accepts_the_documented_format_only():
    assert parse_rating("Short and correct. Rating: [[7]]") == 7.0
    assert parse_rating("Rating: 8.5") == 8.5
    assert parse_rating("[[3]] ... so my rating is [[3]]") == 3.0
    for bad, message in [
        ("It is quite good.", "no rating"),
        ("[[3]] or maybe [[9]]", "several"),
        ("Rating: [[11]]", "outside"),
        ("", "no rating"),
    ]:
        with pytest.raises(JudgeParseError, match=message):
            parse_rating(bad)


def test_parse_verdict():
    assert parse_verdict("B is more accurate. [[B]]") == "B"
    assert parse_verdict("tie [[C]]") == "C"
    with pytest.raises(JudgeParseError):
        parse_verdict("Assistant A is better")
    with pytest.raises(JudgeParseError, match="several"):
        parse_verdict("[[A]] no wait [[B]]")


# ---------------------------------------------------------------- judge plumbing (scripted judge)


def test_judge_parse_failures_are_recorded_with_raw_output_and_retried_on_request(tmp_path):
    path = make_log(tmp_path / "log.db", [("What is 2+2?", "5", "4")])
    prompts = []

    def judge(messages):
        prompts.append(messages)
        answer = messages[1]["content"].split("[The Start of Assistant's Answer]\n")[1].split("\n")[0]
        return "Correct. Rating: [[9]]" if answer == "4" else "I cannot decide."

    summary = score_log(path, JudgeScorer(judge))
    assert (summary.scored, summary.errors) == (1, 1)
    assert prompts[0][0]["content"] == "You are a helpful assistant." and "What is 2+2?" in prompts[0][1]["content"]
    rows = {r["raw"]: r for r in read_scores(path, "judge")}
    assert rows["Correct. Rating: [[9]]"]["score"] == 9.0 and rows["Correct. Rating: [[9]]"]["error"] is None
    failed = rows["I cannot decide."]
    assert failed["score"] is None and "unparsable judge output" in failed["error"]

    again = score_log(path, JudgeScorer(judge))  # nothing new: both calls have rows
    assert (again.scored, again.errors, again.skipped, len(prompts)) == (0, 0, 2, 2)
    retry = score_log(path, JudgeScorer(lambda m: "Rating: [[2]]"), retry_errors=True)
    assert (retry.scored, retry.skipped) == (1, 1)
    assert sorted(r["score"] for r in read_scores(path, "judge")) == [2.0, 9.0]


def test_pairwise_judge_asks_both_orders(tmp_path):
    path = make_log(tmp_path / "log.db", [("q1", "small says", "large says"), ("q2", "s2", "l2")])

    def judge(messages):  # always prefers the first answer shown: position bias only -> a tie
        return "[[A]]" if "q1" in messages[1]["content"] else "no verdict"

    scorer = JudgeScorer(judge, mode="pairwise")
    summary = score_log(path, scorer)
    assert scorer.name == "judge-pairwise" and (summary.scored, summary.errors) == (2, 2)
    rows = read_scores(path, "judge-pairwise")
    assert sorted(r["score"] for r in rows if r["score"] is not None) == [0.5, 0.5]
    failed = [r for r in rows if r["error"]]
    assert len(failed) == 2 and json.loads(failed[0]["raw"])["small_first"] == "no verdict"


@pytest.mark.real_model
def test_real_judge_over_openai_api(tmp_path, openai_server, large_model_name):
    """The tiny model as a judge through a real OpenAI-compatible server: whatever it says is stored as-is."""
    path = make_log(
        tmp_path / "log.db", [("What is the capital of France?", "Paris.", "Paris is the capital.")], shadow=False
    )
    scorer = JudgeScorer(openai_complete(openai_server, large_model_name, api_key="none", max_tokens=16))
    summary = score_log(path, scorer)
    (row,) = read_scores(path, "judge")
    assert summary.scored + summary.errors == 1 and row["raw"]  # the judge's real text is kept
    if row["error"]:
        assert row["score"] is None and row["error"].startswith("unparsable judge output")
    else:
        assert 1 <= row["score"] <= 10 and parse_rating(row["raw"]) == row["score"]


# ---------------------------------------------------------------- reference match


def test_final_number_and_match():
    assert final_number("3 + 4 = 7. The answer is 7.") == 7
    assert final_number("Natalia sold 48/2 = 24 clips in May.\n#### 72") == 72
    assert final_number("It costs $1,250.50 in total") == 1250.5
    assert final_number("no digits") is None
    assert match_answer("so 18 dollars", "#### 18")[0] == 1.0
    assert match_answer("The answer is 17", "18")[0] == 0.0
    assert match_answer("Paris!", "paris")[0] == 1.0 and match_answer("Paris is nice", "Paris")[0] == 0.0


def test_match_scorer_uses_references_and_leaves_unknown_queries(tmp_path):
    path = make_log(tmp_path / "log.db", [("What is 2+2?", "I think 5", "2 + 2 = 4"), ("Unknown?", "a", "b")])
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps({"query": "What is  2+2?", "reference": 4}) + "\n")
    summary = score_log(path, MatchScorer(load_references(refs)))
    assert (summary.scored, summary.unscorable) == (2, 2)
    assert sorted(r["score"] for r in read_scores(path, "match")) == [0.0, 1.0]


def test_reference_file_errors(tmp_path):
    bad = tmp_path / "refs.csv"
    bad.write_text("question,answer\nx,y\n")
    with pytest.raises(ValueError, match="missing column"):
        load_references(bad)
    with pytest.raises(FileNotFoundError):
        load_references(tmp_path / "none.csv")
    good = tmp_path / "good.csv"
    good.write_text('query,reference\n"What is 2+2?",4\n')
    assert load_references(good) == {"What is 2+2?": "4"}


def test_cli_score_log_needs_references_for_match(tmp_path, capsys):
    path = make_log(tmp_path / "log.db", [("q", "a", "b")])
    assert main(["score-log", str(path), "--scorer", "match"]) == 2
    assert "--references" in capsys.readouterr().err
    assert main(["score-log", str(tmp_path / "missing.db"), "--scorer", "embed"]) == 2


# ---------------------------------------------------------------- embedding similarity (real MiniLM)


@pytest.mark.real_model
def test_embed_scorer_with_minilm(tmp_path):
    path = make_log(
        tmp_path / "log.db",
        [
            ("Capital of France?", "The capital of France is Paris.", "Paris is the capital city of France."),
            ("Capital of Spain?", "I like turtles and bicycles.", "Madrid is the capital of Spain."),
        ],
    )
    assert main(["score-log", str(path), "--scorer", "embed"]) == 0
    scores = {r["call_id"]: r["score"] for r in read_scores(path, "embed")}
    assert len(scores) == 4 and sorted(scores.values())[-2:] == [1.0, 1.0]  # the large answers
    close, far = sorted(scores.values())[1], sorted(scores.values())[0]
    assert close > 0.8 and far < 0.3
    assert main(["score-log", str(path), "--scorer", "embed"]) == 0  # re-run: nothing to do
    assert len(read_scores(path, "embed")) == 4
    assert EmbedScorer.name == "embed"
