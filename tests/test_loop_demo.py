"""``hybrid-llm demo --learn`` (two of its rounds): the first is below learn's minimum holdout, the second decides."""

from __future__ import annotations

import re

from hybrid_router.loop.demo import run_learn_demo
from hybrid_router.loop.learn import MIN_HOLDOUT_QUERIES


def test_learn_demo_says_how_many_queries_are_missing_then_decides_by_the_test():
    lines: list[str] = []
    rows = run_learn_demo(rounds=2, echo=lines.append)
    assert [r["queries"] for r in rows] == [0, 200, 400]
    first, second = rows[1], rows[2]
    # round 1: about 100 scored pairs, 30% held out: below the minimum, and the line says how many more are needed
    assert first["held_out"] < MIN_HOLDOUT_QUERIES
    assert re.fullmatch(r"too few pairs: \d+ more scored queries needed", first["step"])
    # round 2: enough held out; the decision names the test's numbers
    assert second["held_out"] >= MIN_HOLDOUT_QUERIES
    assert re.fullmatch(r"(promoted|kept: .+) \(gain [+-]\d\.\d\d, lower bound [+-]\d\.\d\d\)", second["step"])
    assert any(second["step"] in line for line in lines) and "held out" in lines[2]
