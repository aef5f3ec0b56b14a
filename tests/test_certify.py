"""Certified thresholds (issue #20): bounds that hold, tables that never promise what their data cannot certify."""

import warnings

import numpy as np
import pytest

from hybrid_router.core.calibration import ALL_LARGE, Calibration
from hybrid_router.core.cascade import CascadeCalibration, simulate
from hybrid_router.core.certify import check_delta, lower_bounds, upper_bounds, walk_from
from hybrid_router.core.head import LinearHead
from hybrid_router.core.options import RoutingOptions
from hybrid_router.core.router import HybridRouter, UncertifiedWarning


def labelled(n, seed, skill=0.45):
    """Scores and qualities: the route score carries ``skill`` of the true gap, the verifier more."""
    rng = np.random.default_rng(seed)
    q_s = rng.binomial(1, 0.65, n).astype(float)
    q_l = np.maximum(q_s, rng.binomial(1, 0.85, n)).astype(float)
    gap = q_s - q_l
    s_r = np.clip(0.6 + skill * 0.3 * gap + rng.normal(0, 0.2, n), 0, 1)
    s_v = np.clip(0.6 + skill * gap + rng.normal(0, 0.15, n), 0, 1)
    return s_r, s_v, q_s, q_l


def test_the_upper_bound_covers_the_mean_at_least_one_minus_delta_of_the_time():
    rng = np.random.default_rng(0)
    for p, n in ((0.05, 100), (0.3, 400), (0.5, 50)):
        draws = rng.binomial(1, p, size=(400, n)).astype(float)
        bounds = upper_bounds(draws, 0.1)
        assert np.mean(bounds < p) <= 0.1
        assert np.all(bounds >= draws.mean(axis=1))  # never below the sample mean
    lows = lower_bounds(rng.binomial(1, 0.7, size=(400, 200)).astype(float), 0.1)
    assert np.mean(lows > 0.7) <= 0.1


def test_bounds_shrink_with_more_data_and_low_variance():
    rng = np.random.default_rng(1)
    small, big = rng.binomial(1, 0.02, 200).astype(float), rng.binomial(1, 0.02, 5000).astype(float)
    assert upper_bounds(big, 0.1)[0] < upper_bounds(small, 0.1)[0]
    assert upper_bounds(np.zeros(1000), 0.1)[0] < 0.01


def test_bad_inputs_get_one_clear_error():
    with pytest.raises(ValueError, match="delta"):
        check_delta(0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        upper_bounds(np.array([0.5, 2.0]), 0.1)
    with pytest.raises(ValueError, match="start"):
        walk_from(np.zeros(3), "middle")


def test_the_walk_stops_at_the_first_failure():
    bounds = np.array([0.30, 0.02, 0.05, 0.01, 0.0])  # last entry: the safe end
    walked = walk_from(bounds, "end")
    assert list(walked) == [0.30, 0.05, 0.05, 0.01, 0.0]
    assert list(walk_from(bounds, "start")) == [0.30, 0.30, 0.30, 0.30, 0.30]


def test_a_certified_route_threshold_keeps_its_promise_on_new_queries():
    """Over many calibration draws, the expected drop of the chosen threshold exceeds d at most delta of the time
    (the expectation estimated on 200,000 fresh queries), and the promise still saves something at 5%."""
    s_r, _, q_s, q_l = labelled(200_000, 99)
    violations, saved = dict.fromkeys((0.01, 0.02, 0.05), 0), []
    for seed in range(20):
        cal_s, _, cal_qs, cal_ql = labelled(1000, seed)
        table = Calibration.fit(cal_s, cal_qs, cal_ql, delta=0.1, seed=seed)
        for d in violations:
            t = table.threshold_for_max_quality_drop(d)
            to_large = (s_r < t) | (t >= ALL_LARGE)
            violations[d] += (q_l.mean() - np.where(to_large, q_l, q_s).mean()) / q_l.mean() > d
            saved += [1 - to_large.mean()] if d == 0.05 else []
    assert all(v <= 2 for v in violations.values()), violations  # delta = 0.1 of 20 draws
    assert np.mean(saved) > 0.05


def test_a_certified_cascade_keeps_its_promise_where_the_uncertified_frontier_does_not():
    s_r, s_v, q_s, q_l = labelled(200_000, 98)
    certified, uncertified = [], []
    for seed in range(12):
        cal = labelled(1000, seed)
        for bucket, table in (
            (certified, CascadeCalibration.fit(*cal, delta=0.1, seed=seed)),
            (uncertified, CascadeCalibration.fit(*cal)),
        ):
            out = simulate(s_r, s_v, q_s, q_l, *table.thresholds_for_max_quality_drop(0.02))
            bucket.append((q_l.mean() - out.quality) / q_l.mean())
    assert np.mean(np.array(certified) > 0.02) <= 0.1
    assert np.mean(np.array(uncertified) > 0.02) > np.mean(np.array(certified) > 0.02)


def test_a_table_never_promises_a_drop_its_data_cannot_certify():
    # a router that knows nothing, on 60 rows: no drop below a few percent can be certified with any saving
    rng = np.random.default_rng(3)
    q_s = rng.binomial(1, 0.6, 60).astype(float)
    q_l = np.maximum(q_s, rng.binomial(1, 0.9, 60)).astype(float)
    table = Calibration.fit(rng.random(60), q_s, q_l, delta=0.1)
    found = table.resolve_max_quality_drop(0.01)
    assert not found.certified and found.threshold == ALL_LARGE and found.large_share == 1.0
    assert found.smallest_certified is not None and found.smallest_certified > 0.01
    cascade = CascadeCalibration.fit(rng.random(60), rng.random(60), q_s, q_l, delta=0.1)
    pair, found = cascade.resolve_max_quality_drop(0.01)
    assert pair[0] > 1.0 and not found.certified  # every call large at once


def test_large_share_is_a_budget_that_holds():
    s_r, _, q_s, q_l = labelled(200_000, 97)
    for seed in range(10):
        table = Calibration.fit(*[a for i, a in enumerate(labelled(800, seed)) if i != 1], delta=0.1, seed=seed)
        t = table.threshold_for_large_share(0.3)
        assert np.mean(s_r < t) <= 0.3 + 0.01  # P[share > budget] <= delta, and the margin is large here


def test_tables_round_trip_and_old_tables_load_uncertified():
    s_r, s_v, q_s, q_l = labelled(600, 0)
    route, cascade = Calibration.fit(s_r, q_s, q_l, delta=0.05), CascadeCalibration.fit(s_r, s_v, q_s, q_l, delta=0.05)
    for table, kind in ((route, Calibration), (cascade, CascadeCalibration)):
        back = kind.from_dict(table.to_dict())
        assert back.certified and back.certificate.delta == 0.05
        assert np.all(back.drop_bound >= table.drop_bound - 1e-12)  # bounds are rounded up, never down
    old = route.to_dict()
    for key in ("drop_bound", "share_bound", "certificate"):
        old.pop(key)
    assert not Calibration.from_dict(old).certified


def _router(table: Calibration) -> HybridRouter:
    head = LinearHead(np.zeros(384, dtype=np.float32), None, 0.0)
    return HybridRouter(head, encoder="minilm", calibration=table)


def test_the_router_warns_once_and_routes_large_when_the_target_cannot_be_certified():
    rng = np.random.default_rng(4)
    q_s = rng.binomial(1, 0.6, 60).astype(float)
    q_l = np.maximum(q_s, rng.binomial(1, 0.9, 60)).astype(float)
    router = _router(Calibration.fit(rng.random(60), q_s, q_l, delta=0.1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert router.threshold_for(RoutingOptions(max_quality_drop=0.01)) == ALL_LARGE
    said = [w for w in caught if issubclass(w.category, UncertifiedWarning)]
    assert len(said) == 1
    assert "cannot be certified" in str(said[0].message) and "n=60" in str(said[0].message)
    assert "smallest drop" in str(said[0].message)


def test_an_uncertified_old_table_says_it_promises_nothing():
    s_r, _, q_s, q_l = labelled(500, 5)
    router = _router(Calibration.fit(s_r, q_s, q_l))
    with pytest.warns(UncertifiedWarning, match="not certified"):
        router.threshold_for(RoutingOptions(max_quality_drop=0.05))


def test_the_shipped_default_is_certified_on_workloads_it_never_saw():
    router = HybridRouter.default()
    table = router.calibration
    assert table.certified and table.certificate.unit == "workloads" and table.certificate.delta <= 0.1
    assert table.certificate.n >= 20  # workloads
    found = table.resolve_max_quality_drop(0.01)
    assert found.certified and router.default_threshold == pytest.approx(found.threshold, abs=1e-6)
    # a promise across workloads costs more large calls than the in-domain measurement suggested
    assert table.resolve_max_quality_drop(0.05).large_share > 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncertifiedWarning)  # certified targets do not warn
        router.threshold_for(RoutingOptions(max_quality_drop=0.05))
