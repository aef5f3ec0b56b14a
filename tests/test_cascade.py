"""Cascade calibration: the frontier over (route, verify) thresholds and the meaning of the routing options."""

import numpy as np
import pytest

from hybrid_router.core.calibration import Calibration
from hybrid_router.core.cascade import CascadeCalibration, simulate


@pytest.fixture(scope="module")
def labelled():
    rng = np.random.default_rng(0)
    n = 800
    q_s = rng.integers(0, 2, n).astype(float)
    q_l = np.maximum(q_s, rng.integers(0, 2, n))
    gap = q_s - q_l
    s_r = np.clip(0.6 + 0.15 * gap + rng.normal(0, 0.2, n), 0, 1)  # weak: query only
    s_v = np.clip(0.6 + 0.45 * gap + rng.normal(0, 0.15, n), 0, 1)  # strong: sees the answer
    return s_r, s_v, q_s, q_l


def test_every_frontier_row_is_what_the_policy_does(labelled):
    s_r, s_v, q_s, q_l = labelled
    cal = CascadeCalibration.fit(s_r, s_v, q_s, q_l)
    for i in range(0, len(cal.large_share), 7):
        out = simulate(s_r, s_v, q_s, q_l, cal.route_thresholds[i], cal.verify_thresholds[i])
        assert out.large_share == pytest.approx(cal.large_share[i])
        assert out.small_share == pytest.approx(cal.small_share[i])
        assert (q_l.mean() - out.quality) / q_l.mean() == pytest.approx(cal.quality_drop[i])


def test_the_frontier_is_pareto_and_spans_all_small_to_no_drop(labelled):
    cal = CascadeCalibration.fit(*labelled)
    assert np.all(np.diff(cal.large_share) > 0) and np.all(np.diff(cal.quality_drop) < 0)
    assert cal.large_share[0] == 0.0 and cal.quality_drop[-1] <= 1e-12


def test_the_cascade_is_never_worse_than_routing_or_verifying_alone(labelled):
    s_r, s_v, q_s, q_l = labelled
    cal = CascadeCalibration.fit(s_r, s_v, q_s, q_l)
    for d in (0.0, 0.01, 0.05, 0.1):
        route_only = Calibration.fit(s_r, q_s, q_l)
        verify_only = Calibration.fit(s_v, q_s, q_l)
        r_share = route_only.large_share[route_only.thresholds == route_only.threshold_for_max_quality_drop(d)][0]
        v_share = verify_only.large_share[verify_only.thresholds == verify_only.threshold_for_max_quality_drop(d)][0]
        c_share = simulate(s_r, s_v, q_s, q_l, *cal.thresholds_for_max_quality_drop(d)).large_share
        assert c_share <= min(r_share, v_share) + 0.02  # grids differ slightly


def test_options_keep_their_meaning(labelled):
    s_r, s_v, q_s, q_l = labelled
    cal = CascadeCalibration.fit(s_r, s_v, q_s, q_l)
    out = simulate(s_r, s_v, q_s, q_l, *cal.thresholds_for_max_quality_drop(0.02))
    assert (q_l.mean() - out.quality) / q_l.mean() <= 0.02 + 1e-9
    out = simulate(s_r, s_v, q_s, q_l, *cal.thresholds_for_large_share(0.3))
    assert out.large_share <= 0.3 + 1e-9
    route = Calibration.fit(s_r, q_s, q_l)
    t = route.threshold_for_max_quality_drop(0.05)
    out = simulate(s_r, s_v, q_s, q_l, *cal.thresholds_for_route_threshold(t, route))
    routed = np.where(s_r < t, q_l, q_s).mean()
    assert out.quality >= routed - 1e-9  # at least routing's quality at t ...
    assert out.large_share <= float(np.mean(s_r < t))  # ... for no more large calls


def test_round_trip_and_bad_tables(labelled):
    cal = CascadeCalibration.fit(*labelled)
    back = CascadeCalibration.from_dict(cal.to_dict())
    assert back.thresholds_for_max_quality_drop(0.01) == pytest.approx(cal.thresholds_for_max_quality_drop(0.01))
    bad = cal.to_dict() | {"quality_drop": [float("nan")] * len(cal.quality_drop)}
    with pytest.raises(ValueError, match="non-finite"):
        CascadeCalibration.from_dict(bad)
    with pytest.raises(ValueError, match="lengths"):
        CascadeCalibration.from_dict(cal.to_dict() | {"large_share": [0.1]})
    with pytest.raises(ValueError, match="non-empty"):
        CascadeCalibration.fit([], [], [], [])
