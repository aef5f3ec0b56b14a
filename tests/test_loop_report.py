"""``report``: savings at several thresholds from any routing log (observe-mode style included)."""

from __future__ import annotations

import numpy as np
import pytest
from test_loop_common import cli, one_error_line

from hybrid_router.core.answered import Answered
from hybrid_router.core.decision import RouteDecision
from hybrid_router.loop.report import build_report
from hybrid_router.traffic.log_scoring import MatchScorer, score_log
from hybrid_router.traffic.routing_log import RoutingLog

PRICES = {"small-m": (1.0, 1.0), "large-m": (10.0, 10.0)}


def _observe_log(path, n=40, shadow_every=2):
    """Observe mode: the large model answers every call; the row keeps the decision the router would have made.

    Query i has router score i/n; the large answer is always right; the small answer (shadow, every other call)
    is right for the top-scored half only. Tokens: 100 in + 100 out per answer.
    """
    refs = {}
    with RoutingLog(path, prices=PRICES, shadow_rate=0.0) as log:
        for i in range(n):
            score = i / n
            q = f"what is {i} + {i}?"
            refs[q] = str(2 * i)
            target = "small" if score >= 0.5 else "large"
            answered = Answered(
                RouteDecision(target, score, 0.5, "default:quality_threshold", 0.5),
                "large",
                None,
                ("small-m", "large-m"),
            )
            call_id = log.log_call(q, answered, f"the answer is {2 * i}", input_tokens=100, output_tokens=100)
            if i % shadow_every == 0:
                log.shadow_rate = 1.0
                small_answer = f"the answer is {2 * i if score >= 0.5 else 2 * i + 1}"
                log.maybe_shadow(call_id, q, answered, lambda a=small_answer: (a, 100, 100)).result()
                log.shadow_rate = 0.0
    return refs


def test_report_on_an_observe_mode_log(tmp_path):
    log = tmp_path / "observe.db"
    refs = _observe_log(log)
    unscored = build_report(log, thresholds=[0.5])
    assert unscored.scorer is None and unscored.rows[0].quality_drop is None
    score_log(log, MatchScorer(refs))
    report = build_report(log, thresholds=[0.0, 0.5, 0.75, 1.0])
    assert report.calls == 40 and report.n_pairs == 20 and report.scorer == "match"
    rows = {r.threshold: r for r in report.rows}
    # large calls: scores i/40 below t
    assert [rows[t].large_share for t in (0.0, 0.5, 0.75, 1.0)] == [0.0, 0.5, 0.75, 1.0]
    # cost: large call $0.002, small $0.0002 (logged shadow cost where there is one, else the small mean)
    all_large = 40 * 0.002
    assert report.all_large_cost == pytest.approx(all_large)
    assert rows[0.5].cost == pytest.approx(20 * 0.002 + 20 * 0.0002)
    assert rows[0.5].saved == pytest.approx(1 - rows[0.5].cost / all_large)
    # quality: pairs with score < 0.5 have a wrong small answer: sending them small loses their share
    assert rows[0.5].quality_drop == pytest.approx(0.0)
    assert rows[0.0].quality_drop == pytest.approx(0.5)  # half the pairs wrong when all go small
    assert rows[1.0].quality_drop == pytest.approx(0.0) and rows[1.0].saved == pytest.approx(0.0)
    default = build_report(log)
    notes = {r.note for r in default.rows}
    assert "logged threshold, <=1% drop on pairs" in notes  # the logged 0.5 is also the cheapest within 1%
    best = next(r for r in default.rows if r.note.endswith("<=1% drop on pairs"))
    assert best.threshold == pytest.approx(0.5) and best.quality_drop <= 0.01
    text = default.format()
    assert "20 scored pairs (match)" in text and "quality drop" in text
    assert np.all(np.diff([r.threshold for r in default.rows]) > 0)


def test_report_cli_writes_a_png_and_rejects_bad_logs(tmp_path):
    log = tmp_path / "observe.db"
    score_log(log, MatchScorer(_observe_log(log)))
    png = tmp_path / "report.png"
    proc = cli("report", str(log), "--plot", str(png), "--threshold", "0.5", "--threshold", "0.25")
    assert proc.returncode == 0, proc.stderr
    assert "0.500" in proc.stdout and "0.250" in proc.stdout and f"wrote {png}" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = tmp_path / "empty.db"
    RoutingLog(empty).close()
    assert "the log is empty" in one_error_line(cli("report", str(empty)), "report")
    text = tmp_path / "x.db"
    text.write_text("hello")
    assert "not a SQLite database" in one_error_line(cli("report", str(text)), "report")
    assert "not found" in one_error_line(cli("report", str(tmp_path / "none.db")), "report")
    assert "--threshold" in one_error_line(cli("report", str(log), "--threshold", "2"), "report")
