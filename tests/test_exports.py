"""From a scored routing log to training data: router pairs (into ``train``) and SFT chat JSONL (into ``distill``)."""

from __future__ import annotations

import csv
import json

import pytest

from hybrid_router import Answered, FallbackRunner, RouteDecision, RoutingOptions, load_routing_data
from hybrid_router.cli import main
from hybrid_router.local.distill import IGNORE_INDEX, build_examples
from hybrid_router.traffic.exports import ANSWER_COLUMNS, PAIR_COLUMNS, export_pairs, export_sft, read_sft_jsonl
from hybrid_router.traffic.log_scoring import JudgeScorer, read_scores, score_log
from hybrid_router.traffic.routing_log import RoutingLog, read_calls
from hybrid_router.train.training import train_router

LARGE = Answered(RouteDecision("large", 0.2, 0.5, "kwarg:quality_threshold", 0.5), "large", None, ("tiny", "big"))
QUESTIONS = {  # question -> reference answer
    "What is 3 + 4?": "7",
    "What is 10 - 6?": "4",
    "What is 5 + 5?": "10",
    "What is 9 - 2?": "7",
    "What is 2 + 6?": "8",
}


def judge_by_number(messages):
    """A scripted judge for plumbing tests: grades by the answer's last word."""
    answer = messages[1]["content"].split("[The Start of Assistant's Answer]\n")[1].split("\n[The End")[0]
    return f"Rating: [[{answer.split()[-1]}]]"


def make_log(path, rows, **kwargs):
    """Calls answered by the large model (the answer text is also its grade for ``judge_by_number``), each with a
    small shadow answer."""
    with RoutingLog(path, shadow_rate=1.0, **kwargs) as log:
        for question, large_answer, small_answer in rows:
            call_id = log.log_call(question, LARGE, large_answer)
            log.maybe_shadow(call_id, question, LARGE, lambda a=small_answer: (a, 1, 1)).result(5)
    return path


@pytest.mark.real_model
def test_real_traffic_to_retrained_router_and_sft_data(tmp_path, small_local_chat):
    """Route real queries with the shipped router, answer with the real small model (the "large" side is the same
    model with a different system prompt, standing in for a large model), shadow every call, score with the reference
    match and with MiniLM similarity, export both formats and train a router on the export."""
    from hybrid_router import HybridRouter

    router = HybridRouter.default()
    runner = FallbackRunner(model_names=("smollm2-135m", "stand-in-large"))
    system = {"small": [], "large": [{"role": "system", "content": "You are a careful math tutor. Be brief."}]}

    def answer(target, question):
        out = small_local_chat.generate(system[target] + [{"role": "user", "content": question}], max_new_tokens=12)
        return out.text, out.input_tokens, out.output_tokens

    log_path = tmp_path / "traffic.db"
    with RoutingLog(log_path, shadow_rate=1.0, source="test") as log:
        for question in QUESTIONS:
            decision = router.decide(question, RoutingOptions(), "test")
            (text, n_in, n_out), answered = runner.run(decision, lambda target, q=question: answer(target, q))
            call_id = log.log_call(question, answered, text, input_tokens=n_in, output_tokens=n_out)
            other = "large" if answered.answered_by == "small" else "small"
            log.maybe_shadow(call_id, question, answered, lambda o=other, q=question: answer(o, q))
    calls = list(read_calls(log_path))
    assert len(calls) == 10 and {c["answered_by"] for c in calls} == {"small", "large"}

    refs = tmp_path / "refs.csv"
    with open(refs, "w", newline="") as fh:
        csv.writer(fh).writerows([("query", "reference"), *QUESTIONS.items()])
    assert main(["score-log", str(log_path), "--scorer", "match", "--references", str(refs)]) == 0
    assert main(["score-log", str(log_path), "--scorer", "embed"]) == 0
    assert len(read_scores(log_path, "match")) == len(read_scores(log_path, "embed")) == 10

    pairs_csv = tmp_path / "pairs.csv"
    assert main(["export-pairs", str(log_path), str(pairs_csv)]) == 2  # two scorers: must pick one
    assert main(["export-pairs", str(log_path), str(pairs_csv), "--scorer", "embed"]) == 0
    with open(pairs_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == PAIR_COLUMNS + ANSWER_COLUMNS and len(rows) == 5  # the log kept the answers' text
    assert {r["metric"] for r in rows} == {"similarity"} and {r["large_score"] for r in rows} == {"1.0"}
    data = load_routing_data(pairs_csv)
    assert sorted(data.queries) == sorted(QUESTIONS) and data.small_model == "smollm2-135m"
    assert all(data.small_answers) and all(data.large_answers)
    result = train_router(data, labels="trans", val_fraction=0.4)
    assert result.n_train == 3 and result.n_val == 2 and 0.0 <= result.router.score("What is 1 + 1?") <= 1.0
    assert (
        main(["train", str(pairs_csv), "--labels", "trans", "--val-fraction", "0.4", "--out", str(tmp_path / "router")])
        == 0
    )

    sft = tmp_path / "sft.jsonl"
    assert main(["export-sft", str(log_path), str(sft), "--min-score", "0.5", "--scorer", "embed"]) == 0
    conversations = read_sft_jsonl(sft)
    large_answers = {c["answer"] for c in calls if c["answered_by"] == "large"}
    assert len(conversations) == len(large_answers)  # embed gives every large answer 1.0
    assert {c[-1]["content"] for c in conversations} == large_answers
    examples = build_examples(small_local_chat.tokenizer, conversations, max_length=128)
    targets = [small_local_chat.tokenizer.decode([t for t in labels if t != IGNORE_INDEX]) for _, labels in examples]
    assert all(t.startswith(c[-1]["content"]) for t, c in zip(targets, conversations))


def test_export_pairs_format_and_selection(tmp_path):
    path = make_log(
        tmp_path / "log.db", [("q1", "ok 9", "meh 4"), ("q1", "ok 8", "meh 5"), ("q2", "ok 7", "meh 6")], source="demo"
    )
    with RoutingLog(path) as log:  # a call without a shadow answer cannot make a pair
        log.log_call("q3", LARGE, "alone 9")
    with RoutingLog(path, store_text=False, shadow_rate=1.0) as log:  # privacy mode: no text, never exported
        call_id = log.log_call("secret", LARGE, "hidden 9")
        log.maybe_shadow(call_id, "secret", LARGE, lambda: ("x 1", 1, 1)).result(5)
    with pytest.raises(ValueError, match="no scores yet"):
        export_pairs(path, tmp_path / "out.csv")
    score_log(path, JudgeScorer(judge_by_number))
    assert export_pairs(path, tmp_path / "out.csv") == 3
    data = load_routing_data(tmp_path / "out.csv")
    assert data.metric == "judge1to10" and data.small_model == "tiny" and data.large_model == "big"
    # the two q1 calls share a query_id: two samples of one query
    assert len(data) == 2 and sorted(len(s) for s in data.large_scores) == [1, 2]
    by_query = dict(zip(data.queries, data.mean_large()))
    assert by_query == {"q1": 8.5, "q2": 7.0}
    with pytest.raises(ValueError, match="no scores from 'match'"):
        export_pairs(path, tmp_path / "out.csv", scorer="match")


def test_export_sft_keeps_only_good_teacher_answers(tmp_path):
    convo = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q1"}]
    path = make_log(
        tmp_path / "log.db",
        [
            (convo, "good 9", "small 10"),
            (convo, "good 9", "small 10"),
            ("q2", "poor 3", "small 10"),
            ("q3", "fine 7", "small 1"),
        ],
    )
    score_log(path, JudgeScorer(judge_by_number))
    out = tmp_path / "sft.jsonl"
    assert export_sft(path, out, min_score=7) == 2  # the duplicate of "good 9" is written once; small never
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[0]["messages"] == convo + [{"role": "assistant", "content": "good 9"}]
    assert records[1]["messages"] == [{"role": "user", "content": "q3"}, {"role": "assistant", "content": "fine 7"}]
    assert records[0]["metadata"]["scorer"] == "judge" and records[0]["metadata"]["score"] == 9.0
    assert read_sft_jsonl(out) == [r["messages"] for r in records]
    assert export_sft(path, out, min_score=9.5) == 0
