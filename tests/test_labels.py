"""Label modes and the relaxation rule on hand-made tables with known answers."""

import numpy as np
import pytest

from hybrid_router.train.data_io import RoutingData
from hybrid_router.train.labels import find_relaxation, make_labels, mean_pairwise_difference


def table(small, large, metric=None):
    small = [np.atleast_1d(np.asarray(s, float)) for s in small]
    large = [np.atleast_1d(np.asarray(l, float)) for l in large]
    n = len(small)
    return RoutingData([str(i) for i in range(n)], [f"q{i}" for i in range(n)], small, large, metric=metric)


def test_det_labels_are_small_at_least_large():
    y, t = make_labels(table([1, 0, 5, 3], [1, 1, 4, 7]), "det")
    assert y.tolist() == [1, 0, 1, 0] and t == 0.0


def test_prob_labels_average_over_sample_pairs():
    # query 0: small samples {1, 0}, large samples {1, 0}: pairs s>=l: (1,1) (1,0) (0,0) -> 3/4
    # query 1: small {0, 0, 0}, large {1}: 0/3
    data = table([[1, 0], [0, 0, 0]], [[1, 0], [1]])
    y, _ = make_labels(data, "prob")
    assert y.tolist() == [0.75, 0.0]


def test_prob_labels_use_preference_probability_for_pairwise_metric():
    data = table([0.9, 0.2], [0.1, 0.8], metric="pairwise_prob")
    y, _ = make_labels(data, "prob")
    assert y.tolist() == pytest.approx([0.9, 0.2])


def test_trans_finds_the_relaxation_that_balances_labels():
    # gaps l - s = 0,1,2,3 (x2): t=0 -> 1/4 positive, t=1 -> 1/2 positive (most informative), t=2 -> 3/4
    data = table([5, 4, 3, 2, 5, 4, 3, 2], [5, 5, 5, 5, 5, 5, 5, 5])
    y, t = make_labels(data, "trans")
    assert t == pytest.approx(1.0, abs=0.05)
    assert y.mean() == 0.5


def test_trans_with_given_relaxation():
    y, t = make_labels(table([5, 4, 3], [5, 5, 5]), "trans", t=2.0)
    assert t == 2.0 and y.tolist() == [1, 1, 1]


def test_relaxation_stays_zero_when_labels_are_already_balanced():
    assert find_relaxation(table([1, 0], [1, 1])) == 0.0


def test_mean_pairwise_difference_matches_brute_force():
    y = np.random.default_rng(0).random(40)
    assert mean_pairwise_difference(y) == pytest.approx(np.abs(y[:, None] - y[None, :]).mean())


def test_unknown_mode_and_bad_relaxation_are_errors():
    data = table([1], [0])
    with pytest.raises(ValueError, match="unknown label mode"):
        make_labels(data, "soft")
    with pytest.raises(ValueError, match="relaxation"):
        make_labels(data, "trans", t=-1.0)
