"""Price tables and cost totals."""

import pytest

from hybrid_router import CostTracker, PriceTable

PRICES = {"small-m": (0.1, 0.2), "large-m": {"input": 10, "output": 30}}


def meta(answered, fallback=False):
    return {"model": f"{answered}-m", "answered_by": answered, "large_model": "large-m", "fallback": fallback}


def test_totals_and_savings_vs_all_large():
    tracker = CostTracker(PRICES)
    tracker.record(meta("small"), 1_000_000, 1_000_000)
    tracker.record(meta("large"), 1_000_000, 0)
    assert tracker.per_model["small-m"].cost == pytest.approx(0.3)
    assert tracker.total_cost == pytest.approx(10.3)
    assert tracker.all_large_cost == pytest.approx(40 + 10)
    assert tracker.savings == pytest.approx(39.7)
    assert tracker.routes == {"small": 1, "large": 1}
    assert "saved $39.7" in tracker.summary()


def test_unpriced_models_are_listed():
    tracker = CostTracker({})
    tracker.record({"model": "mystery", "answered_by": "small", "large_model": "big"}, 10, 10)
    assert tracker.unpriced == {"mystery", "big"} and "No price for" in tracker.summary()


@pytest.mark.parametrize("bad", [(1,), ("a", 1), (-1, 2), {"input": 1}])
def test_bad_prices(bad):
    with pytest.raises(ValueError, match="price of 'm'"):
        PriceTable({"m": bad})
