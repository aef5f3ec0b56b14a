"""``hybrid-llm demo`` end to end: shipped router, shipped small model, the session's real local large server."""

from __future__ import annotations

import json

import pytest

from hybrid_router.cli import main
from hybrid_router.serve.demo import DEFAULT_LARGE_PRICE, DEFAULT_SMALL_PRICE, DEMO_QUERIES


def test_demo_queries_span_trivial_to_hard():
    assert 10 <= len(DEMO_QUERIES) <= 14 and len(set(DEMO_QUERIES)) == len(DEMO_QUERIES)


def test_demo_rejects_bad_options(capsys):
    assert main(["demo", "--limit", "0"]) == 2
    assert "--limit must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--small-price", "cheap"])


@pytest.mark.real_model
def test_demo_routes_prints_the_table_and_writes_json(
    openai_server, large_model_name, default_router, tmp_path, capsys, small_hf_model
):
    scores = default_router.score_batch(list(DEMO_QUERIES[:3]))
    threshold = float(sorted(scores)[1])  # at least one query each way (scores >= threshold go small)
    out = tmp_path / "demo.json"
    code = main(
        [
            "demo",
            "--limit",
            "3",
            "--large",
            openai_server,
            "--large-model",
            large_model_name,
            "--max-tokens",
            "4",
            "--threshold",
            str(threshold),
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "saved $" in printed and "query" in printed.splitlines()[0]

    result = json.loads(out.read_text())
    rows = result["queries"]
    assert [r["query"] for r in rows] == list(DEMO_QUERIES[:3])
    assert {r["route"] for r in rows} == {"small", "large"}
    for row, score in zip(rows, scores):
        assert row["score"] == pytest.approx(float(score), abs=1e-5)
        assert row["route"] == ("small" if row["score"] >= threshold else "large")
        assert row["answered_by"] == row["route"] and not row["fallback"]
        assert row["model"] == (result["small_model"] if row["route"] == "small" else result["large_model"])
        assert row["answer"] and 0 < row["output_tokens"] <= 4 and row["input_tokens"] > 5
        assert row["query"][:20] in printed
        assert f"-> {' '.join(row['answer'].split())[:20]}" in printed  # each answer is shown, not only its score
        price = DEFAULT_SMALL_PRICE if row["route"] == "small" else DEFAULT_LARGE_PRICE
        assert row["cost"] == pytest.approx(price.cost(row["input_tokens"], row["output_tokens"]))

    totals = result["totals"]
    all_large = sum(DEFAULT_LARGE_PRICE.cost(r["input_tokens"], r["output_tokens"]) for r in rows)
    assert totals["all_large_cost"] == pytest.approx(all_large)
    assert totals["cost"] == pytest.approx(sum(r["cost"] for r in rows))
    assert totals["saved"] == pytest.approx(all_large - totals["cost"]) and totals["saved"] > 0
    assert (totals["small"], totals["large"]) == (
        sum(r["route"] == "small" for r in rows),
        sum(r["route"] == "large" for r in rows),
    )
